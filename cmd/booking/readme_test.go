package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/api/apitest"
)

// TestReadmeWalkthrough runs the README's curl walkthrough, exactly as written, against a
// real server started with the README's command (plus a free port and a temp data dir).
func TestReadmeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		skipOutsideCI(t, "curl is not installed (.ci/run installs it)")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- walkthrough:start -->\n```sh\n")
	script, _, ok2 := strings.Cut(rest, "```\n<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("README has no walkthrough block")
	}
	e := startE2E(t, "--catalog=../../testdata/catalog.json", "--no-demo=false")
	cmd := exec.Command("bash", "-c", script)
	// curl goes through a proxy that checks every answer against api/openapi.yaml.
	cmd.Env = append(os.Environ(), "B="+apitest.SpecProxy(t, e.url))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"status":"ACTIVE"`, `"balance":200000`, `"status":"HELD"`, `"status":"COMPLETED"`, `"status":"CONFIRMED"`, `"balance":50000`, `"type":"PAYMENT"`,
		// Bob's hold of seats 7 and 8 is refused whole, naming 7; 12 and 13 are held and paid together.
		`"code":"SEAT_UNAVAILABLE","unavailableSeats":[7]`, `"seatNo":12,"seatNos":[12,13],"price":240000,"status":"HELD"`, `"amount":240000,"status":"COMPLETED"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, out)
		}
	}
	// The sell-out reaches the read models asynchronously: poll with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		dates := e.do("GET", "/api/v1/concerts/aurora/dates", nil)
		rank := e.do("GET", "/api/v1/rankings/daily", nil)
		if strings.Contains(string(dates.raw), `"availableSeats":0,"soldOut":true`) && strings.Contains(string(rank.raw), `"rank":1,"concertId":"aurora","dateId":"2026-12-24"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("date not sold out and ranked:\n%s\n%s\nwalkthrough output:\n%s", dates.raw, rank.raw, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
