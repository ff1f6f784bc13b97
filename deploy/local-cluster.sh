#!/usr/bin/env bash
# Scale-out on one machine, from the deploy/ files: three nats-servers (clients on 4222-4224,
# routes on 6222-6224, monitoring on 8222-8224) and two booking instances on
# http://127.0.0.1:8081 and http://127.0.0.1:8082, all in the background.
#
#   deploy/local-cluster.sh up      build, start, wait until both instances are ready
#   deploy/local-cluster.sh down    stop them (SIGTERM) and keep the data
#   deploy/local-cluster.sh clean   stop them and delete the data
#
# Binaries, pid files, logs and data go to $BOOKING_CLUSTER_DIR (default .cluster/ in the
# repository). The nodes run deploy/nats/nats.conf with deploy/nats/cluster.env, the instances
# deploy/booking/booking.env; only the addresses, ports and dirs are replaced here, through the
# variables those files declare, as a one-machine cluster needs. The instances load the demo
# catalog (testdata/catalog.json) so that there is something to book.
set -euo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$deploy")
dir=${BOOKING_CLUSTER_DIR:-$root/.cluster}
nodes=(1 2 3)
instances=(8081 8082)

log() { printf 'local-cluster: %s\n' "$*" >&2; }

# wait_for runs "$@" every 0.2 s until it succeeds, and fails when the process $1 exits or $2
# seconds have passed, showing the end of its log.
wait_for() {
	local name=$1 within=$2
	shift 2
	local deadline=$((SECONDS + within))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$dir/run/$name.pid" || ((SECONDS >= deadline)); then
			log "$name: not ready within ${within}s or exited; end of $dir/logs/$name.log:"
			tail -n 20 "$dir/logs/$name.log" >&2
			return 1
		fi
		sleep 0.2
	done
}

# alive reports whether the process of pid file $1 runs, and is one of ours (not a process
# that got the pid of one that exited meanwhile).
alive() {
	local pid
	[[ -f $1 ]] && pid=$(cat "$1") && ps -p "$pid" -o command= 2>/dev/null | grep -qF "$dir/bin/"
}

# start runs "$@" in the background as $name, with its pid in run/$name.pid and its output in
# logs/$name.log; the caller has exported the environment.
start() {
	local name=$1
	shift
	if alive "$dir/run/$name.pid"; then
		log "$name already runs (pid $(cat "$dir/run/$name.pid"))"
		return
	fi
	nohup "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$dir/run/$name.pid"
}

# meta_leader reports whether node $1 knows a JetStream meta leader of a 3-node cluster.
meta_leader() {
	local jsz
	jsz=$(curl -fsS "http://127.0.0.1:$((8221 + $1))/jsz") || return 1
	grep -q '"leader": *"n[0-9]' <<<"$jsz" && grep -q '"cluster_size": *3' <<<"$jsz"
}

up() {
	command -v curl >/dev/null || { log "curl is needed to wait for the cluster"; exit 1; }
	mkdir -p "$dir/bin" "$dir/run" "$dir/logs" "$dir/data"
	log "building nats-server (the version in go.mod) and booking into $dir/bin"
	(cd "$root" && go build -o "$dir/bin/nats-server" github.com/nats-io/nats-server/v2 &&
		go build -o "$dir/bin/booking" ./cmd/booking)

	local routes=() n
	for n in "${nodes[@]}"; do routes+=("nats-route://127.0.0.1:$((6221 + n))"); done
	routes=$(IFS=,; echo "[${routes[*]}]")
	for n in "${nodes[@]}"; do
		(
			set -a
			# shellcheck source=nats/cluster.env
			. "$deploy/nats/cluster.env"
			NATS_SERVER_NAME=n$n # what nats-server@n$n.service sets
			NATS_LISTEN=127.0.0.1:$((4221 + n))
			NATS_CLUSTER_LISTEN=127.0.0.1:$((6221 + n))
			NATS_HTTP=127.0.0.1:$((8221 + n))
			NATS_ROUTES=$routes
			NATS_STORE_DIR=$dir/data/n$n
			set +a
			start "nats-n$n" "$dir/bin/nats-server" -c "$deploy/nats/nats.conf"
		)
	done
	# Instances start on a formed cluster (docs/OPERATIONS.md): every node sees the meta leader.
	for n in "${nodes[@]}"; do
		wait_for "nats-n$n" 60 meta_leader "$n" || exit 1
	done
	log "NATS cluster formed: nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"

	# One instance after the other, so that each one's log shows its own start; they could
	# also start together (the event store creates only the streams that are missing).
	local port
	for port in "${instances[@]}"; do
		(
			set -a
			# shellcheck source=booking/booking.env
			. "$deploy/booking/booking.env"
			BOOKING_NATS_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
			BOOKING_NO_DEMO=false
			BOOKING_CATALOG=$root/testdata/catalog.json
			set +a
			# The command line of booking@$port.service, on loopback.
			start "booking-$port" "$dir/bin/booking" serve --http-addr "127.0.0.1:$port" --data-dir "$dir/data/booking-$port"
		)
		wait_for "booking-$port" 90 curl -fsS "http://127.0.0.1:$port/readyz" || exit 1
	done
	log "ready: http://127.0.0.1:8081 and http://127.0.0.1:8082 (admin token: BOOKING_ADMIN_TOKEN in deploy/booking/booking.env)"
	log "logs in $dir/logs; stop with: deploy/local-cluster.sh down"
}

# stop sends SIGTERM to the process of pid file $1, waits up to 60 s for it to exit, then
# kills it.
stop() {
	local pidfile=$1 pid deadline=$((SECONDS + 60))
	pid=$(cat "$pidfile")
	if alive "$pidfile" && kill -TERM "$pid" 2>/dev/null; then
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "pid $pid still runs 60s after SIGTERM: killing it"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
	fi
	rm -f "$pidfile"
}

down() {
	local f
	# Instances first, so that they do not wait on nodes that are gone.
	for f in "$dir"/run/booking-*.pid "$dir"/run/nats-*.pid; do
		[[ -f $f ]] || continue
		log "stopping $(basename "$f" .pid)"
		stop "$f"
	done
}

case ${1:-} in
up) up ;;
down) down ;;
clean)
	down
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 up|down|clean" >&2
	exit 2
	;;
esac
