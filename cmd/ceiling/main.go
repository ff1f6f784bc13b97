// Command ceiling measures what a load test on this machine can show of any service: the
// generator of `booking bench` (its client, open-model schedule and latency recorder) offers
// holds to a server that does only the HTTP part of one — Fiber decodes the request's JSON and
// answers 201 with a reservation-shaped JSON body — run as a child process, as
// `booking bench --embedded` runs the service. Whatever latency and throughput it shows, the
// engine cannot beat on the same machine: the rest is the engine's. It also says how much CPU
// time per hold the generator and the no-op server leave on this machine for an engine's own
// work (deciding, committing, read models) at the offered rate.
//
//	go run ./cmd/ceiling --rate 10000 --duration 15s --client nethttp
//
// It imports Fiber and loadgen, nothing of the engine.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/loadgen"
)

// holdPath is the contract's hold endpoint, so a generator pointed at it sends what it
// would send the engine.
const holdPath = "/api/v1/reservations"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

// options are the command line's.
type options struct {
	rate     float64
	duration time.Duration
	warmup   time.Duration
	client   string
	inflight int
	serve    string // set in the child: the address to serve on
	target   string // a server already running (no child)
}

func parse(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Float64Var(&o.rate, "rate", 10000, "holds offered per second")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "how long the measured phase lasts")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured holds at the rate before it (connections, pools)")
	fs.StringVar(&o.client, "client", string(loadgen.ClientFastHTTP), "the generator's HTTP client: fasthttp or nethttp")
	fs.IntVar(&o.inflight, "max-inflight", 4096, "requests in flight at most (and connections)")
	fs.StringVar(&o.serve, "serve", "", "serve the no-op hold on this address instead of measuring (how the child runs)")
	fs.StringVar(&o.target, "target", "", "measure a no-op server already running at this URL instead of starting one")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.serve == "" && (o.rate <= 0 || o.duration <= 0 || o.warmup < 0 || o.inflight <= 0) {
		return o, errors.New("--rate, --duration and --max-inflight must be positive, --warmup 0 or more")
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		return err
	}
	if o.serve != "" {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serve(ctx, o.serve, nil)
	}
	target, serverPID := o.target, 0
	if target == "" {
		child, url, err := startChild(ctx)
		if err != nil {
			return err
		}
		defer child.stop()
		target, serverPID = url, child.cmd.Process.Pid
	}
	res, err := measure(ctx, target, o, serverPID)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "client %s, offered %.0f/s for %s: %d ok (%.0f/s), %d not; latency ms p50 %.2f p95 %.2f p99 %.2f p99.9 %.2f max %.2f; CPU s generator %s, server %s\n",
		o.client, o.rate, o.duration, res.step.OK, res.okPerSec, res.step.Count-res.step.OK,
		res.step.P50Ms, res.step.P95Ms, res.step.P99Ms, res.step.P999Ms, res.step.MaxMs,
		seconds(res.generatorCPU), seconds(res.serverCPU))
	if err != nil {
		return err
	}
	if busy, perHold, ok := engineBudget(runtime.NumCPU(), res.took, res.generatorCPU, res.serverCPU, res.step.OK); ok {
		_, err = fmt.Fprintf(out, "of %d CPUs, generator and no-op server kept %.2f busy: an engine on this machine has at most %s of CPU per hold left at this rate, with no time to spare\n",
			runtime.NumCPU(), busy, perHold.Round(time.Microsecond))
	}
	return err
}

// engineBudget is what a measured run leaves of the machine for the engine's own work: the
// CPUs the generator and the no-op server kept busy over took (busy, in CPUs), and the CPU
// time per answered hold that the rest of the machine could give an engine (perHold). An
// engine that needs more than perHold per hold cannot sustain the rate beside this generator;
// one that needs all of it runs the machine at 100%, where no latency target holds. ok is
// false when a CPU time is unknown (a --target server) or nothing was answered.
func engineBudget(cpus int, took, generatorCPU, serverCPU time.Duration, holds int64) (busy float64, perHold time.Duration, ok bool) {
	if cpus <= 0 || took <= 0 || generatorCPU < 0 || serverCPU < 0 || holds <= 0 {
		return 0, 0, false
	}
	used := generatorCPU + serverCPU
	busy = used.Seconds() / took.Seconds()
	left := time.Duration(cpus)*took - used
	if left < 0 {
		left = 0
	}
	return busy, left / time.Duration(holds), true
}

// seconds prints a CPU time, or "n/a" when it could not be read (negative).
func seconds(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64)
}

// cpuTime returns the user and system time process pid has used (0: this process), or -1 if
// the system does not say (it is read from /proc, so on Linux only, in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return -1
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name, in parentheses, may hold spaces; the fields after it are fixed.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// since returns the CPU time used since before, or -1 when either reading failed.
func since(before, after time.Duration) time.Duration {
	if before < 0 || after < 0 {
		return -1
	}
	return after - before
}

// reservation is the contract's Reservation written again, as any client of the contract
// writes it: the ceiling must import nothing of the engine (api's wire types would bring all
// of it). It is the shape of the answer to a hold, so the answer costs what the engine's costs
// to encode, send and decode.
type reservation struct {
	ReservationID string    `json:"reservationId"`
	UserID        string    `json:"userId"`
	ConcertID     string    `json:"concertId"`
	DateID        string    `json:"dateId"`
	SeatNo        int       `json:"seatNo"`
	SeatNos       []int     `json:"seatNos"`
	Price         int64     `json:"price"`
	Status        string    `json:"status"`
	HeldAt        time.Time `json:"heldAt"`
	HeldUntil     time.Time `json:"heldUntil"`
}

// serve answers holds on addr until ctx ends; ready, when not nil, receives the address it
// listens on.
func serve(ctx context.Context, addr string, ready chan<- string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	var n atomic.Int64
	app.Post(holdPath, func(c *fiber.Ctx) error {
		var h loadgen.HoldRequest
		if c.Get("Queue-Token") == "" || json.Unmarshal(c.Body(), &h) != nil || h.SeatNo <= 0 && len(h.SeatNos) == 0 {
			return c.SendStatus(fiber.StatusBadRequest)
		}
		seats := h.SeatNos
		if len(seats) == 0 {
			seats = []int{h.SeatNo}
		}
		now := time.Now().UTC()
		body, err := json.Marshal(reservation{ReservationID: "r-" + strconv.FormatInt(n.Add(1), 10),
			UserID: h.UserID, ConcertID: h.ConcertID, DateID: h.DateID, SeatNo: seats[0], SeatNos: seats,
			Price: 110000, Status: "HELD", HeldAt: now, HeldUntil: now.Add(5 * time.Minute)})
		if err != nil {
			return err
		}
		c.Status(fiber.StatusCreated)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return app.Shutdown()
	}
}

// child is the server process.
type child struct{ cmd *exec.Cmd }

func (c child) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	_ = c.cmd.Wait()
}

// startChild runs this program as the server on a free loopback port, with one Go
// processor more than the CPUs (what `booking serve` takes with embedded NATS), and returns
// once it answers.
func startChild(ctx context.Context) (child, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return child{}, "", err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	self, err := os.Executable()
	if err != nil {
		return child{}, "", err
	}
	cmd := exec.CommandContext(ctx, self, "--serve", addr)
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(runtime.NumCPU()+1))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return child{}, "", fmt.Errorf("start the server: %w", err)
	}
	c := child{cmd}
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
			return c, "http://" + addr, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return child{}, "", fmt.Errorf("the server did not listen on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is one measured phase.
type result struct {
	step     loadgen.StepResult
	okPerSec float64
	// took is how long the measured phase ran.
	took time.Duration
	// generatorCPU and serverCPU are the CPU time each used in the measured phase (-1: not
	// known, as for a --target server).
	generatorCPU, serverCPU time.Duration
}

// measure offers holds at the rate, first for the warm-up, unrecorded, then for the duration.
func measure(ctx context.Context, target string, o options, serverPID int) (result, error) {
	c, err := loadgen.NewClient(target, loadgen.ClientOptions{MaxConns: o.inflight, Timeout: 10 * time.Second, Kind: loadgen.ClientKind(o.client)})
	if err != nil {
		return result{}, err
	}
	offer := func(d time.Duration, rec *loadgen.Recorder) (time.Duration, error) {
		s := loadgen.Schedule{Rate: o.rate, Count: loadgen.CountFor(o.rate, d), MaxInflight: o.inflight}
		start := time.Now()
		_, err := loadgen.RunOpen(ctx, loadgen.RealClock{}, s, func(ctx context.Context, i int, at time.Time) {
			body, err := json.Marshal(loadgen.HoldRequest{UserID: "user-" + strconv.Itoa(i%20000), ConcertID: "concert-1",
				DateID: "date-" + strconv.Itoa(i%10+1), SeatNo: i%10000 + 1})
			if err != nil {
				return
			}
			var held struct {
				SeatNos []int `json:"seatNos"`
			}
			r, err := c.Do(ctx, "POST", holdPath, []loadgen.Header{{Name: "Queue-Token", Value: "token-" + strconv.Itoa(i%20000)}}, body, &held)
			if rec != nil {
				rec.Record("hold", time.Since(at), loadgen.Classify(r, err), r.Code)
			}
		})
		return time.Since(start), err
	}
	if o.warmup > 0 {
		if _, err := offer(o.warmup, nil); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	rec := loadgen.NewRecorder("hold")
	server0, self0 := time.Duration(-1), cpuTime(0)
	if serverPID != 0 {
		server0 = cpuTime(serverPID)
	}
	took, err := offer(o.duration, rec)
	res := result{generatorCPU: since(self0, cpuTime(0)), serverCPU: -1}
	if serverPID != 0 {
		res.serverCPU = since(server0, cpuTime(serverPID))
	}
	if err != nil {
		return result{}, err
	}
	step := rec.Steps()[0]
	if step.Count == 0 {
		return result{}, errors.New("no hold was recorded")
	}
	res.step, res.okPerSec, res.took = step, float64(step.OK)/took.Seconds(), took
	return res, nil
}
