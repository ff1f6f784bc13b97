package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// The deploy test runs the cluster of deploy/ the way an operator does: three nats-servers
// with deploy/nats/nats.conf in the environment nats-server@.service gives them (cluster.env
// plus the node's name), and two `booking serve` instances with the command line of
// booking@.service in the environment of booking.env. Only the values the files declare for
// operators to edit (addresses, ports, store dirs) are replaced, by free loopback ports and
// temp dirs, so a broken file fails here rather than on an operator's machine.

// deployDir is deploy/ from this package's directory; the units name the files by where the
// README installs them: /etc/nats/X is deploy/nats/X, /etc/booking/X is deploy/booking/X.
const deployDir = "../../deploy"

// TestDeployFilesBookThroughTwoInstancesOnAThreeNodeCluster starts the deploy/ cluster and
// books a seat through each instance with a queue token issued by the other one.
func TestDeployFilesBookThroughTwoInstancesOnAThreeNodeCluster(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts three nats-servers and two server processes")
	}
	cl := startDeployNATS(t)
	for _, n := range cl.nodes {
		if !syncsAlways(t, n) {
			t.Errorf("node %s does not fsync every message: nats.conf lost sync_interval: always", n.name())
		}
	}

	unit := readUnit(t, "systemd/booking@.service")
	env := readEnvFile(t, unit.environmentFile(t))
	overrideEnv(t, env, "BOOKING_NATS_URL", cl.urls())
	for k, v := range env {
		t.Setenv(k, v) // inherited by the instances, as systemd's EnvironmentFile= does
	}
	var instances []*apiClient
	for range 2 {
		port := fmt.Sprint(freeLoopbackPort(t))
		args := unit.execStart(t, port, map[string]string{"STATE_DIRECTORY": t.TempDir()})
		if filepath.Base(args[0]) != "booking" {
			t.Fatalf("booking@.service runs %s, not booking", args[0])
		}
		p := startBookingProc(t, args[1:]...)
		p.waitReady(60 * time.Second)
		instances = append(instances, newAPIClient(t, p.url, env["BOOKING_ADMIN_TOKEN"], 10*time.Second))
	}

	info, err := cl.streamInfo("SEATS_0")
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 {
		t.Errorf("stream SEATS_0 has %d replicas: booking.env lost BOOKING_REPLICAS=3", info.Config.Replicas)
	}

	const price = 100
	instances[0].createConcert(t, "deploy", 2, price)
	cases := []struct {
		name             string
		through, issuing int
		seat             int
	}{
		{name: "a seat is booked through the first instance with a token the second issued", through: 0, issuing: 1, seat: 1},
		{name: "a seat is booked through the second instance with a token the first issued", through: 1, issuing: 0, seat: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, user := instances[tc.through], fmt.Sprintf("deploy-%d", tc.seat)
			tok, err := instances[tc.issuing].token(user)
			if err != nil {
				t.Fatal(err)
			}
			c.mustCall(t, 200, "POST", "/api/v1/users/"+user+"/points/charge", map[string]any{"amount": price})
			r, err := c.hold(user, tok, "deploy", tc.seat)
			if err != nil || r.status != 201 {
				t.Fatalf("hold of seat %d: %v %v (a 401 means the instances sign tokens with different secrets)", tc.seat, r, err)
			}
			id := r.str("reservationId")
			c.mustCall(t, 201, "POST", "/api/v1/payments", map[string]any{"reservationId": id, "userId": user}, "Queue-Token", tok)
			pollUntil(t, 10*time.Second, "the issuing instance showing the reservation confirmed", func() error {
				r, err := instances[tc.issuing].call("GET", "/api/v1/reservations/"+id, nil)
				if err != nil {
					return err
				}
				if r.str("status") != "CONFIRMED" {
					return fmt.Errorf("reservation %s", r)
				}
				return nil
			})
		})
	}
}

// startDeployNATS starts nats-server@n1..n3 of deploy/ on free loopback ports and temp store
// dirs and waits until the cluster can place a stream on all three nodes.
func startDeployNATS(t *testing.T) *natsCluster {
	t.Helper()
	unit := readUnit(t, "systemd/nats-server@.service")
	args := unit.execStart(t, "n1", nil)
	if filepath.Base(args[0]) != "nats-server" {
		t.Fatalf("nats-server@.service runs %s, not nats-server", args[0])
	}
	i := slices.Index(args, "-c")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("nats-server@.service names no configuration file (-c): %v", args)
	}
	conf, err := filepath.Abs(deployPath(t, args[i+1]))
	if err != nil {
		t.Fatal(err)
	}
	clusterEnv := readEnvFile(t, unit.environmentFile(t))

	specs := make([]natsChildSpec, 3)
	var routes []string
	for i := range specs {
		specs[i] = natsChildSpec{Name: fmt.Sprintf("n%d", i+1), Port: freeLoopbackPort(t),
			ClusterPort: freeLoopbackPort(t), HTTPPort: freeLoopbackPort(t), Config: conf}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", specs[i].ClusterPort))
	}
	cl := &natsCluster{t: t}
	for _, spec := range specs {
		env := unit.environment(spec.Name)
		for k, v := range clusterEnv {
			env[k] = v
		}
		overrideEnv(t, env, "NATS_LISTEN", fmt.Sprintf("127.0.0.1:%d", spec.Port))
		overrideEnv(t, env, "NATS_CLUSTER_LISTEN", fmt.Sprintf("127.0.0.1:%d", spec.ClusterPort))
		overrideEnv(t, env, "NATS_HTTP", fmt.Sprintf("127.0.0.1:%d", spec.HTTPPort))
		overrideEnv(t, env, "NATS_ROUTES", "["+strings.Join(routes, ",")+"]")
		overrideEnv(t, env, "NATS_STORE_DIR", filepath.Join(t.TempDir(), spec.Name))
		spec.Env = env
		n := &natsProc{t: t, spec: spec}
		cl.nodes = append(cl.nodes, n)
		t.Cleanup(n.kill)
	}
	for _, n := range cl.nodes {
		n.start()
	}
	cl.waitFormed()
	return cl
}

// syncsAlways reports whether the node's JetStream fsyncs every message, as its monitoring
// endpoint tells.
func syncsAlways(t *testing.T, n *natsProc) bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.spec.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info natsserver.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatalf("/jsz of %s: %v", n.name(), err)
	}
	return info.Config.SyncAlways
}

// deployPath is the file of deploy/ that a unit names by its installed path.
func deployPath(t *testing.T, installed string) string {
	t.Helper()
	rel, ok := strings.CutPrefix(installed, "/etc/")
	if !ok {
		t.Fatalf("%s is not under /etc/, where deploy/README.md installs the files", installed)
	}
	return filepath.Join(deployDir, rel)
}

// readEnvFile reads an environment file as systemd's EnvironmentFile= does: KEY=VALUE lines,
// blank lines and comments (# or ;) skipped, one pair of surrounding quotes removed. Any other
// line fails the test: systemd would skip it with a warning, an operator would not notice.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || !envKey.MatchString(k) {
			t.Fatalf("%s:%d: not KEY=VALUE: %s", path, line, s)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// overrideEnv replaces a value an operator edits; the file must declare it, so that a renamed
// variable fails here and not only when nats-server or booking cannot find it.
func overrideEnv(t *testing.T, env map[string]string, key, value string) {
	t.Helper()
	if _, ok := env[key]; !ok {
		t.Fatalf("the environment file does not declare %s", key)
	}
	env[key] = value
}

// systemdUnit holds the [Service] settings of a unit file the test uses.
type systemdUnit struct {
	path     string
	settings map[string][]string // key → values in file order
}

// readUnit reads the [Service] section of a unit file of deploy/ (no line continuations).
func readUnit(t *testing.T, name string) systemdUnit {
	t.Helper()
	path := filepath.Join(deployDir, name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := systemdUnit{path: path, settings: map[string][]string{}}
	section := ""
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not KEY=VALUE: %s", path, line)
			}
			u.settings[k] = append(u.settings[k], v)
		}
	}
	return u
}

// environmentFile is the deploy/ file of the unit's single EnvironmentFile=.
func (u systemdUnit) environmentFile(t *testing.T) string {
	t.Helper()
	files := u.settings["EnvironmentFile"]
	if len(files) != 1 {
		t.Fatalf("%s: %d EnvironmentFile= settings, want 1", u.path, len(files))
	}
	return deployPath(t, files[0])
}

// environment is what the unit's Environment= settings set for instance.
func (u systemdUnit) environment(instance string) map[string]string {
	env := map[string]string{}
	for _, e := range u.settings["Environment"] {
		k, v, _ := strings.Cut(strings.ReplaceAll(e, "%i", instance), "=")
		env[k] = v
	}
	return env
}

// execStart is the unit's command line for instance, with ${VAR} expanded from vars (what
// systemd sets, e.g. STATE_DIRECTORY) as systemd expands them.
func (u systemdUnit) execStart(t *testing.T, instance string, vars map[string]string) []string {
	t.Helper()
	lines := u.settings["ExecStart"]
	if len(lines) != 1 {
		t.Fatalf("%s: %d ExecStart= settings, want 1", u.path, len(lines))
	}
	args := strings.Fields(strings.ReplaceAll(lines[0], "%i", instance))
	for i, a := range args {
		args[i] = os.Expand(a, func(name string) string {
			v, ok := vars[name]
			if !ok {
				t.Fatalf("%s: ExecStart uses ${%s}, which the test does not know", u.path, name)
			}
			return v
		})
	}
	return args
}
