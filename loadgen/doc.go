// Package loadgen is the load generator behind `booking bench`. It is a client of the public
// HTTP API only (see the contract); it imports nothing of the engine, so what it measures is
// what a real client sees.
//
// The generator follows the open model: requests are launched on a fixed schedule whether or
// not earlier ones have answered, and every latency is measured from the time a request was
// scheduled to start, not from when it was actually sent. A slow server therefore shows up as
// queueing in the latency figures instead of silently lowering the offered rate (the
// "coordinated omission" of closed-loop generators). A safety cap on requests in flight keeps
// a stalled server from exhausting the generator; every time the cap delays a launch it is
// counted and reported, and the delay is still part of that request's latency.
//
// The target must run with `--user-rate-limit 0 --queue-batch 0`: the per-user abuse limit and
// the waiting queue would otherwise answer 429 RATE_LIMITED and 403 TOKEN_NOT_ACTIVE, which
// measure the limits rather than the engine. Such answers are counted separately and reported
// with a hint when they occur.
package loadgen
