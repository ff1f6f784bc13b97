# The same commands as the README, as recipes (https://github.com/casey/just).

# Run the service: embedded NATS JetStream in ./data, demo catalog, http://localhost:8080
serve *ARGS:
    go run ./cmd/booking serve {{ARGS}}

# Run every test with the race detector (CI adds BOOKING_LONG_TESTS=1 for the long crash and cluster scenarios)
test:
    go test -race ./...

# What CI runs: gofmt, vet, tests
ci:
    bash .ci/run

# Benchmarks of the hot paths
bench:
    go test -run '^$' -bench . -benchmem ./...

# Soak: bookings with refunds, expiries and seat-map reads of returning users for 10 minutes; fails if anonymous RSS, heap, goroutines, open files, p99 or lag trend upward (e.g. `just soak --target http://127.0.0.1:8081,http://127.0.0.1:8082 --admin-token T --rate 400`)
soak *ARGS="--embedded":
    go run ./cmd/booking bench soak {{ARGS}}

# Rebuild every read model from the event log
rebuild *ARGS:
    go run ./cmd/booking rebuild {{ARGS}}

# Audit the event log
verify *ARGS:
    go run ./cmd/booking verify {{ARGS}}

# The mock data platform on 127.0.0.1:9090
dataplatform *ARGS:
    go run ./cmd/booking dataplatform {{ARGS}}

# Three nats-servers and two instances (http://127.0.0.1:8081, :8082) from the deploy/ files, in the background
cluster-up:
    bash deploy/local-cluster.sh up

# Stop what cluster-up started (data kept in .cluster/; `bash deploy/local-cluster.sh clean` deletes it)
cluster-down:
    bash deploy/local-cluster.sh down
