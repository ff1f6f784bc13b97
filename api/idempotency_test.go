package api_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/api/idemstore"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"

	"github.com/booking-engine/booking/internal/testclock"
)

func withKey(r apitest.Request, key string) apitest.Request {
	h := map[string]string{"Idempotency-Key": key}
	for k, v := range r.Header {
		h[k] = v
	}
	r.Header = h
	return r
}

func sameAnswer(t *testing.T, first, again apitest.Response) {
	t.Helper()
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) || again.Header.Get("Content-Type") != first.Header.Get("Content-Type") {
		t.Fatalf("repeat answered %d %q %s, first was %d %q %s", again.Status, again.Header.Get("Content-Type"), again.Body,
			first.Status, first.Header.Get("Content-Type"), first.Body)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("a replay is not marked Idempotent-Replayed")
	}
}

func TestIdempotencyKeys(t *testing.T) {
	for _, b := range backends(t) {
		t.Run("kept "+b.name, func(t *testing.T) {
			hold := post("/api/v1/reservations", holdBody, qt, "active:u1")

			t.Run("a repeat with the same key and body gets the first answer and runs nothing", func(t *testing.T) {
				e := b.env(t)
				first := e.Do(withKey(hold, "k1"))
				first.Expect(t, 201, "")
				again := e.Do(withKey(hold, "k1"))
				sameAnswer(t, first, again)
				if n := e.cmds.count("Hold"); n != 1 {
					t.Fatalf("Hold ran %d times", n)
				}
			})
			t.Run("the same JSON with other white space and field order is the same request", func(t *testing.T) {
				e := b.env(t)
				first := e.Do(withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1"))
				again := e.Do(withKey(post("/api/v1/users/u1/points/charge", " {\n \"amount\" : 5 }\n"), "k1"))
				sameAnswer(t, first, again)
				if n := e.cmds.count("Charge"); n != 1 {
					t.Fatalf("Charge ran %d times", n)
				}
			})
			t.Run("the same key with another body is 422 IDEMPOTENCY_KEY_REUSED", func(t *testing.T) {
				e := b.env(t)
				e.Do(withKey(hold, "k1")).Expect(t, 201, "")
				other := post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNo": 2}, qt, "active:u1")
				e.Do(withKey(other, "k1")).Expect(t, 422, "IDEMPOTENCY_KEY_REUSED")
				if n := e.cmds.count("Hold"); n != 1 {
					t.Fatalf("Hold ran %d times", n)
				}
			})
			t.Run("the same key on another path of the route is 422 IDEMPOTENCY_KEY_REUSED", func(t *testing.T) {
				e := b.env(t)
				e.Do(withKey(post("/api/v1/payments/p1/refund", nil, admin, adminBearer), "k1")).Expect(t, 200, "")
				e.Do(withKey(post("/api/v1/payments/p2/refund", nil, admin, adminBearer), "k1")).Expect(t, 422, "IDEMPOTENCY_KEY_REUSED")
			})
			t.Run("one user's key never answers another user's request", func(t *testing.T) {
				e := b.env(t)
				a := e.Do(withKey(post("/api/v1/queue/tokens", `{"userId":"u1"}`), "shared"))
				b := e.Do(withKey(post("/api/v1/queue/tokens", `{"userId":"u2"}`), "shared"))
				a.Expect(t, 201, "")
				b.Expect(t, 201, "")
				if bytes.Equal(a.Body, b.Body) || e.cmds.count("IssueToken") != 2 {
					t.Fatalf("u2 got u1's answer: %s", b.Body)
				}
			})
			t.Run("the same key on another endpoint is another request", func(t *testing.T) {
				e := b.env(t)
				e.Do(withKey(post("/api/v1/queue/tokens", `{"userId":"u1"}`), "k1")).Expect(t, 201, "")
				e.Do(withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1")).Expect(t, 200, "")
			})
			t.Run("a replay is answered before the queue-token check", func(t *testing.T) {
				e := b.env(t)
				pay := post("/api/v1/payments", payBody, qt, "active:u1")
				first := e.Do(withKey(pay, "pay-1"))
				first.Expect(t, 201, "")
				// The payment revoked the token: a new request with it fails, the retry does not.
				e.Do(withKey(pay, "pay-2")).Expect(t, 401, "TOKEN_EXPIRED")
				sameAnswer(t, first, e.Do(withKey(pay, "pay-1")))
				if n := e.cmds.count("Pay"); n != 1 {
					t.Fatalf("Pay ran %d times", n)
				}
			})
			t.Run("a domain refusal is kept for its key like a success", func(t *testing.T) {
				e := b.env(t)
				e.cmds.fail("Pay", aggregates.ErrInsufficientPoints)
				first := e.Do(withKey(post("/api/v1/payments", payBody, qt, "active:u1"), "k1"))
				first.Expect(t, 409, "INSUFFICIENT_POINTS")
				e.cmds.fail("Pay", nil)
				sameAnswer(t, first, e.Do(withKey(post("/api/v1/payments", payBody, qt, "active:u1"), "k1")))
			})
			t.Run("a 5xx is not kept, so the retry runs", func(t *testing.T) {
				e := b.env(t)
				e.cmds.fail("Hold", fmt.Errorf("append: %w", eventstore.ErrUnavailable))
				e.Do(withKey(hold, "k1")).Expect(t, 503, "SERVICE_UNAVAILABLE")
				e.cmds.fail("Hold", nil)
				r := e.Do(withKey(hold, "k1"))
				r.Expect(t, 201, "")
				if r.Header.Get("Idempotent-Replayed") != "" || e.cmds.count("Hold") != 2 {
					t.Fatalf("the retry was not run: %v", e.cmds.Calls())
				}
			})
			t.Run("a refused check is not kept, so the corrected retry runs", func(t *testing.T) {
				e := b.env(t)
				e.Do(withKey(post("/api/v1/reservations", holdBody, qt, "waiting:u1"), "k1")).Expect(t, 403, "TOKEN_NOT_ACTIVE")
				e.Do(withKey(hold, "k1")).Expect(t, 201, "")
			})
			t.Run("a malformed body is not kept, so the corrected retry runs", func(t *testing.T) {
				e := b.env(t)
				e.Do(withKey(post("/api/v1/reservations", `{"userId":"u1"`, qt, "active:u1"), "k1")).Expect(t, 400, "INVALID_REQUEST")
				e.Do(withKey(hold, "k1")).Expect(t, 201, "")
			})
			t.Run("a request without a key runs every time", func(t *testing.T) {
				e := b.env(t)
				e.Do(hold).Expect(t, 201, "")
				e.Do(hold).Expect(t, 201, "")
				if n := e.cmds.count("Hold"); n != 2 {
					t.Fatalf("Hold ran %d times", n)
				}
			})
		})
	}
}

func TestMalformedIdempotencyKeysAre400(t *testing.T) {
	for _, key := range []string{strings.Repeat("k", 129), "caf\u00e9", "tab\there"} {
		t.Run(fmt.Sprintf("key %q is refused", key), func(t *testing.T) {
			e := newEnv(t)
			e.Do(withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), key)).Expect(t, 400, "INVALID_IDEMPOTENCY_KEY")
			if calls := e.cmds.Calls(); len(calls) != 0 {
				t.Fatalf("calls %v", calls)
			}
		})
	}
	for _, b := range backends(t) {
		t.Run("a key of 128 printable characters is accepted and kept "+b.name, func(t *testing.T) {
			e := b.env(t)
			charge := withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), strings.Repeat("~", 127)+"/")
			first := e.Do(charge)
			first.Expect(t, 200, "")
			sameAnswer(t, first, e.Do(charge))
		})
	}
}

func TestIdempotencyKeysSurviveARestart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run("kept "+b.name, func(t *testing.T) {
			open := b.deployment(t)
			clock := testclock.New(t0)
			cmds := newFakeCommands(clock)
			build := func() (*apitest.Client, *idemstore.Store) {
				st := open(clock)
				return apitest.New(t, api.Deps{Commands: cmds, Queries: &fakeQueries{}, Idempotency: st, Clock: clock}, api.Config{}), st
			}
			hold := withKey(post("/api/v1/reservations", holdBody, qt, "active:u1"), "k1")

			c1, st1 := build()
			first := c1.Do(hold)
			first.Expect(t, 201, "")
			if err := st1.Close(); err != nil {
				t.Fatal(err)
			}

			c2, _ := build()
			sameAnswer(t, first, c2.Do(hold))
			if n := cmds.count("Hold"); n != 1 {
				t.Fatalf("Hold ran %d times across the restart", n)
			}
		})
	}
}

// TestSharedIdempotencyKeysSurviveARestartOfNATS restarts the embedded server under the
// bucket: the answers are kept on disk like the events.
func TestSharedIdempotencyKeysSurviveARestartOfNATS(t *testing.T) {
	dir := t.TempDir()
	clock := testclock.New(t0)
	cmds := newFakeCommands(clock)
	charge := withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1")
	run := func() apitest.Response {
		es, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer es.Close()
		st, err := idemstore.OpenShared(context.Background(), es.JetStream(), idemstore.SharedOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return apitest.New(t, api.Deps{Commands: cmds, Queries: &fakeQueries{}, Idempotency: st, Clock: clock}, api.Config{}).Do(charge)
	}
	first := run()
	first.Expect(t, 200, "")
	sameAnswer(t, first, run())
	if n := cmds.count("Charge"); n != 1 {
		t.Fatalf("Charge ran %d times across the restart", n)
	}
}

func TestIdempotencyKeysExpireAfter24Hours(t *testing.T) {
	for _, b := range backends(t) {
		t.Run("kept "+b.name, func(t *testing.T) {
			e := b.env(t)
			charge := withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1")
			e.Do(charge).Expect(t, 200, "")

			e.clock.Advance(24 * time.Hour)
			if r := e.Do(charge); r.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("the key was forgotten after exactly 24 h: %s", r.Body)
			}
			if n, err := e.deps.Idempotency.Sweep(); err != nil || n != 0 {
				t.Fatalf("swept %d (%v) at 24 h", n, err)
			}

			e.clock.Advance(time.Second)
			r := e.Do(charge)
			r.Expect(t, 200, "")
			if r.Header.Get("Idempotent-Replayed") != "" || e.cmds.count("Charge") != 2 {
				t.Fatalf("an expired key was replayed: %v", e.cmds.Calls())
			}
			// The answer of the second run is live; only an expired one is swept.
			e.clock.Advance(24*time.Hour + time.Second)
			if n, err := e.deps.Idempotency.Sweep(); err != nil || n != 1 {
				t.Fatalf("swept %d (%v) after 24 h", n, err)
			}
			if n, err := e.deps.Idempotency.Len(); err != nil || n != 0 {
				t.Fatalf("%d answers (%v) left after the sweep", n, err)
			}
		})
	}
}

func TestConcurrentRepeatsOfOneKeyHaveOneEffect(t *testing.T) {
	for _, b := range backends(t) {
		t.Run("kept "+b.name, func(t *testing.T) {
			e := b.env(t)
			gate := make(chan struct{})
			e.cmds.holdGate = gate
			concurrentRepeats(t, e.cmds, gate, []*apitest.Client{e.Client}, 32)
		})
	}
}

// concurrentRepeats sends n identical holds with one key at once, spread over the
// instances, and checks that the hold ran once and every request got its answer. gate holds
// the hold until every request was sent.
func concurrentRepeats(t *testing.T, cmds *fakeCommands, gate chan struct{}, instances []*apitest.Client, n int) {
	t.Helper()
	answers := make([]apitest.Response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i], errs[i] = instances[i%len(instances)].TryDo(withKey(post("/api/v1/reservations", holdBody, qt, "active:u1"), "same"))
		}()
	}
	close(start)
	deadline := time.Now().Add(10 * time.Second)
	for cmds.holdsInProgress() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no hold started")
		}
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if answers[i].Status != 201 || !bytes.Equal(answers[i].Body, answers[0].Body) {
			t.Fatalf("answer %d: %d %s, answer 0: %s", i, answers[i].Status, answers[i].Body, answers[0].Body)
		}
	}
	if c := cmds.count("Hold"); c != 1 {
		t.Fatalf("Hold ran %d times", c)
	}
}

func TestConcurrentRequestsWithDistinctKeysAllRun(t *testing.T) {
	for _, b := range backends(t) {
		t.Run("kept "+b.name, func(t *testing.T) {
			e := b.env(t)
			const n = 64
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := e.TryDo(withKey(apitest.Request{Method: http.MethodPost, Path: "/api/v1/users/u1/points/charge", Body: `{"amount":1}`}, fmt.Sprint("key-", i)))
					if err != nil || r.Status != 200 {
						t.Errorf("charge %d: %v %d %s", i, err, r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			if c := e.cmds.count("Charge"); c != n {
				t.Fatalf("Charge ran %d times, want %d", c, n)
			}
			if size, err := e.deps.Idempotency.Len(); err != nil || size != n {
				t.Fatalf("store holds %d answers (%v), want %d", size, err, n)
			}
		})
	}
}

// twoInstances returns two API instances on one application and one shared bucket, as two
// `booking serve` side by side behind a load balancer. written returns once both have
// written the answers they kept: an answer is written after its response, and until then a
// repeat on the other instance is settled by the application (see
// TestConcurrentRepeatsThroughTwoInstancesHaveOneEffect), which the fake commands are not.
func twoInstances(t *testing.T, shared backend) (a, b *apitest.Client, cmds *fakeCommands, written func()) {
	clock := testclock.New(t0)
	cmds = newFakeCommands(clock)
	open := shared.deployment(t)
	var stores []*idemstore.Store
	build := func() *apitest.Client {
		st := open(clock)
		stores = append(stores, st)
		return apitest.New(t, api.Deps{Commands: cmds, Queries: &fakeQueries{}, Idempotency: st, Clock: clock},
			api.Config{AdminToken: adminToken, RequestTimeout: 5 * time.Second})
	}
	a, b = build(), build()
	return a, b, cmds, func() {
		t.Helper()
		for _, st := range stores {
			if err := st.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestIdempotencyKeysHoldAcrossInstances(t *testing.T) {
	shared := sharedBackend(t)
	charge := withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1")
	t.Run("a repeat through the other instance gets the first answer and runs nothing", func(t *testing.T) {
		a, b, cmds, written := twoInstances(t, shared)
		first := a.Do(charge)
		first.Expect(t, 200, "")
		written()
		sameAnswer(t, first, b.Do(charge))
		sameAnswer(t, first, a.Do(charge))
		if n := cmds.count("Charge"); n != 1 {
			t.Fatalf("Charge ran %d times", n)
		}
	})
	t.Run("the same key with another body through the other instance is 422 IDEMPOTENCY_KEY_REUSED", func(t *testing.T) {
		a, b, cmds, written := twoInstances(t, shared)
		a.Do(charge).Expect(t, 200, "")
		written()
		b.Do(withKey(post("/api/v1/users/u1/points/charge", `{"amount":6}`), "k1")).Expect(t, 422, "IDEMPOTENCY_KEY_REUSED")
		if n := cmds.count("Charge"); n != 1 {
			t.Fatalf("Charge ran %d times", n)
		}
	})
	t.Run("a replay through the other instance is answered before the queue-token check", func(t *testing.T) {
		a, b, cmds, written := twoInstances(t, shared)
		pay := withKey(post("/api/v1/payments", payBody, qt, "active:u1"), "pay-1")
		first := a.Do(pay)
		first.Expect(t, 201, "")
		written()
		// The payment revoked the token: a new request with it fails, the retry does not.
		b.Do(withKey(post("/api/v1/payments", payBody, qt, "active:u1"), "pay-2")).Expect(t, 401, "TOKEN_EXPIRED")
		sameAnswer(t, first, b.Do(pay))
		if n := cmds.count("Pay"); n != 1 {
			t.Fatalf("Pay ran %d times", n)
		}
	})
	t.Run("a 5xx through one instance is not kept, so the retry through the other runs", func(t *testing.T) {
		a, b, cmds, _ := twoInstances(t, shared)
		cmds.fail("Charge", fmt.Errorf("append: %w", eventstore.ErrUnavailable))
		a.Do(charge).Expect(t, 503, "SERVICE_UNAVAILABLE")
		cmds.fail("Charge", nil)
		r := b.Do(charge)
		r.Expect(t, 200, "")
		if r.Header.Get("Idempotent-Replayed") != "" || cmds.count("Charge") != 2 {
			t.Fatalf("the retry was not run: %v", cmds.Calls())
		}
	})
	t.Run("a refused check through one instance is not kept, so the corrected retry through the other runs", func(t *testing.T) {
		a, b, cmds, _ := twoInstances(t, shared)
		a.Do(withKey(post("/api/v1/reservations", holdBody, qt, "waiting:u1"), "k1")).Expect(t, 403, "TOKEN_NOT_ACTIVE")
		b.Do(withKey(post("/api/v1/reservations", holdBody, qt, "active:u1"), "k1")).Expect(t, 201, "")
		if n := cmds.count("Hold"); n != 1 {
			t.Fatalf("Hold ran %d times", n)
		}
	})
}

func TestUnreachableIdempotencyStoreIs503(t *testing.T) {
	es := openJetStream(t)
	e := newEnv(t, func(d *api.Deps, _ *api.Config) {
		st, err := idemstore.OpenShared(context.Background(), es.JetStream(), idemstore.SharedOptions{Clock: d.Clock})
		if err != nil {
			t.Fatal(err)
		}
		d.Idempotency = st
	})
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	e.Do(withKey(post("/api/v1/users/u1/points/charge", `{"amount":5}`), "k1")).Expect(t, 503, "SERVICE_UNAVAILABLE")
	if calls := e.cmds.Calls(); len(calls) != 0 {
		t.Fatalf("a keyed request ran without its key's protection: %v", calls)
	}
	e.Do(post("/api/v1/users/u1/points/charge", `{"amount":5}`)).Expect(t, 200, "")
}

// backend is one kind of idempotency store the API runs on; the idempotency tests run on each.
type backend struct {
	name string
	js   jetstream.JetStream // the server of the shared bucket; nil: a file
}

// backends returns the file store and the shared store, the latter on an embedded JetStream
// that the subtests of t share (each in its own bucket).
func backends(t *testing.T) []backend {
	return []backend{{name: "in this instance's file"}, sharedBackend(t)}
}

func sharedBackend(t *testing.T) backend {
	return backend{name: "in the bucket shared by the instances", js: openJetStream(t).JetStream()}
}

func openJetStream(t *testing.T) *eventstore.JetStreamStore {
	t.Helper()
	es, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	return es
}

var buckets atomic.Int64

// deployment returns the opener of the stores of one deployment: the shared stores it opens
// share their keys (instances side by side, or one instance restarted); the file stores are
// the same file, which one store at a time may hold. Each store is closed when t ends.
func (b backend) deployment(t *testing.T) func(clock app.Clock) *idemstore.Store {
	if b.js == nil {
		path := filepath.Join(t.TempDir(), "idempotency.db")
		return func(clock app.Clock) *idemstore.Store { return apitest.OpenIdempotency(t, path, clock) }
	}
	bucket := fmt.Sprint("idem_", buckets.Add(1))
	return func(clock app.Clock) *idemstore.Store {
		st, err := idemstore.OpenShared(context.Background(), b.js, idemstore.SharedOptions{Clock: clock, Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}

// env returns a test environment on a store of its own of this backend.
func (b backend) env(t *testing.T) *env {
	open := b.deployment(t)
	return newEnv(t, func(d *api.Deps, _ *api.Config) { d.Idempotency = open(d.Clock) })
}
