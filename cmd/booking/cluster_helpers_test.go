package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Real nats-server instances on loopback: a standalone server in the test process (for the
// fault tests), and a JetStream cluster whose nodes are child processes (the test binary
// re-executed), so that a node can be killed with SIGKILL like a crashed machine, not only
// shut down politely (a polite shutdown hands its raft leaderships over first).

// natsNode is one nats-server in the test process.
type natsNode struct {
	t    *testing.T
	opts natsserver.Options
	mu   sync.Mutex
	srv  *natsserver.Server
}

// startStandaloneNATS starts a JetStream server on a free loopback port and stops it when the
// test ends.
func startStandaloneNATS(t *testing.T, name string) *natsNode {
	t.Helper()
	n := &natsNode{t: t, opts: natsserver.Options{
		ServerName: name, Host: "127.0.0.1", Port: freeLoopbackPort(t),
		JetStream: true, StoreDir: filepath.Join(t.TempDir(), "jetstream"), NoSigs: true, NoLog: true,
	}}
	n.start()
	t.Cleanup(n.shutdown)
	return n
}

// start starts the server (again) on its port and store dir.
func (n *natsNode) start() {
	n.t.Helper()
	opts := n.opts // the server keeps and changes its options: give each start a copy
	srv, err := natsserver.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("nats-server %s: %v", n.opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		n.t.Fatalf("nats-server %s not ready", n.opts.ServerName)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

// shutdown stops the server (idempotent).
func (n *natsNode) shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// natsChildEnv turns a re-executed test binary into a nats-server with the natsChildSpec in
// it (JSON); see runAsChild.
const natsChildEnv = "BOOKING_TEST_CHILD_NATS"

// natsChildSpec configures one cluster node run as a child process.
type natsChildSpec struct {
	Name        string `json:"name"`
	StoreDir    string `json:"storeDir"`
	Port        int    `json:"port"`
	ClusterPort int    `json:"clusterPort"`
	HTTPPort    int    `json:"httpPort"`
	Routes      string `json:"routes"`
	// Config, when set, is a nats-server configuration file the node runs with instead of
	// the fields above (which then only tell the test where the node listens), with Env set
	// in its environment for the file's $VARIABLES: the deploy test runs deploy/'s files.
	Config string            `json:"config,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
}

// runNATSChild runs the nats-server of spec until SIGTERM (a polite shutdown) or SIGKILL.
func runNATSChild(raw string) {
	var spec natsChildSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "bad", natsChildEnv, err)
		os.Exit(2)
	}
	opts := &natsserver.Options{
		ServerName: spec.Name, Host: "127.0.0.1", Port: spec.Port, HTTPHost: "127.0.0.1", HTTPPort: spec.HTTPPort,
		JetStream: true, StoreDir: spec.StoreDir, NoSigs: true, NoLog: true,
		Cluster: natsserver.ClusterOpts{Name: "booking-test", Host: "127.0.0.1", Port: spec.ClusterPort},
		Routes:  natsserver.RoutesFromStr(spec.Routes),
	}
	if spec.Config != "" {
		for k, v := range spec.Env {
			os.Setenv(k, v)
		}
		var err error
		// What `nats-server -c FILE` does with the file; its log goes to stderr, which the
		// parent shows when the node fails to start.
		if opts, err = natsserver.ProcessConfigFile(spec.Config); err != nil {
			fmt.Fprintln(os.Stderr, "nats-server:", err)
			os.Exit(1)
		}
		opts.NoSigs = true
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats-server:", err)
		os.Exit(1)
	}
	if spec.Config != "" {
		srv.ConfigureLogger()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go srv.Start()
	<-sigs
	srv.Shutdown()
	srv.WaitForShutdown()
}

// natsProc is one cluster node as a child process.
type natsProc struct {
	t    *testing.T
	spec natsChildSpec
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the node (again) and waits until it accepts clients.
func (n *natsProc) start() {
	n.t.Helper()
	raw, err := json.Marshal(n.spec)
	if err != nil {
		n.t.Fatal(err)
	}
	top, _, _ := strings.Cut(n.t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+top+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), natsChildEnv+"="+string(raw))
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	pollUntil(n.t, 30*time.Second, "nats-server "+n.spec.Name+" accepting clients", func() error {
		select {
		case <-done:
			return fmt.Errorf("exited: %s", out)
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.spec.Port), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// kill ends the node with SIGKILL: no leadership hand-over, no flush, as when a machine dies.
func (n *natsProc) kill() { n.signal(syscall.SIGKILL) }

// stop shuts the node down politely (SIGTERM).
func (n *natsProc) stop() { n.signal(syscall.SIGTERM) }

func (n *natsProc) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.t.Errorf("signal %s: %v", n.spec.Name, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	n.mu.Lock()
	n.cmd = nil
	n.mu.Unlock()
}

func (n *natsProc) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

func (n *natsProc) name() string {
	if n == nil {
		return "none"
	}
	return n.spec.Name
}

func (n *natsProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.spec.Port) }

// natsCluster is a JetStream cluster of child-process nodes routed to each other on loopback.
type natsCluster struct {
	t     *testing.T
	nodes []*natsProc
}

// startNATSCluster starts size JetStream nodes (n1, n2, ...) in one cluster and waits until
// the cluster can place a stream on all of them: booking instances are started on a formed
// cluster, as an operator would (see docs/OPERATIONS.md).
func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	c := newNATSCluster(t, size)
	for _, n := range c.nodes {
		n.start()
	}
	c.waitFormed()
	return c
}

// newNATSCluster prepares size nodes routed to each other without starting them.
func newNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	var routes []string
	specs := make([]natsChildSpec, size)
	for i := range specs {
		name := fmt.Sprintf("n%d", i+1)
		specs[i] = natsChildSpec{Name: name, StoreDir: filepath.Join(t.TempDir(), name),
			Port: freeLoopbackPort(t), ClusterPort: freeLoopbackPort(t), HTTPPort: freeLoopbackPort(t)}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", specs[i].ClusterPort))
	}
	c := &natsCluster{t: t}
	for _, spec := range specs {
		spec.Routes = strings.Join(routes, ",")
		n := &natsProc{t: t, spec: spec}
		c.nodes = append(c.nodes, n)
		t.Cleanup(n.kill)
	}
	return c
}

// waitMetaLeader waits until the running nodes have elected a JetStream meta leader.
func (c *natsCluster) waitMetaLeader() {
	c.t.Helper()
	pollUntil(c.t, 60*time.Second, "a JetStream meta leader", func() error {
		if c.metaLeader() == nil {
			return fmt.Errorf("no meta leader yet")
		}
		return nil
	})
}

// waitFormed waits until a stream replicated on every node can be created (and deletes it).
// Right after the meta leader is elected, stream requests may still go unanswered or find
// too few peers for a while.
func (c *natsCluster) waitFormed() {
	c.t.Helper()
	c.waitMetaLeader()
	nc, err := nats.Connect(c.urls(), nats.Name("cluster-test"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	pollUntil(c.t, 60*time.Second, "the cluster placing a stream on every node", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FORMED", Subjects: []string{"formed.probe"}, Replicas: len(c.nodes)}); err != nil {
			return err
		}
		return js.DeleteStream(ctx, "FORMED")
	})
}

// urls lists the client URLs of every node, as --nats-url takes them.
func (c *natsCluster) urls() string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.url()
	}
	return strings.Join(out, ",")
}

// metaLeader returns the node that leads the JetStream meta group, as a running node's
// monitoring endpoint tells, or nil.
func (c *natsCluster) metaLeader() *natsProc {
	hc := http.Client{Timeout: 2 * time.Second}
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.spec.HTTPPort))
		if err != nil {
			continue
		}
		var info natsserver.JSInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err == nil && info.Meta != nil && info.Meta.Leader != "" {
			return c.node(info.Meta.Leader)
		}
	}
	return nil
}

// node returns the node named name, or nil.
func (c *natsCluster) node(name string) *natsProc {
	for _, n := range c.nodes {
		if n.name() == name {
			return n
		}
	}
	return nil
}

// streamInfo asks the cluster (through its running nodes) about a stream.
func (c *natsCluster) streamInfo(stream string) (*jetstream.StreamInfo, error) {
	var urls []string
	for _, n := range c.nodes {
		if n.running() {
			urls = append(urls, n.url())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name("cluster-test"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// streamLeader returns the node that leads stream, waiting for the stream to have one.
func (c *natsCluster) streamLeader(stream string) *natsProc {
	c.t.Helper()
	var leader *natsProc
	pollUntil(c.t, 30*time.Second, "a leader of "+stream, func() error {
		info, err := c.streamInfo(stream)
		if err != nil {
			return err
		}
		if info.Cluster == nil || c.node(info.Cluster.Leader) == nil {
			return fmt.Errorf("%s has no leader yet", stream)
		}
		leader = c.node(info.Cluster.Leader)
		return nil
	})
	return leader
}
