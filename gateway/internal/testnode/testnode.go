// Package testnode starts a real go-ethereum dev node (geth --dev) and talks to it
// directly, so tests can compare the gateway's answers with the node's own. Tests run
// it on free loopback ports (Start); `./task dev` runs the same node on the standard
// ports through the devnode command (Launch). It is the one definition of geth's
// version and flags.
//
// For failover tests: a node can keep its chain in a data directory (DataDir), stop
// gracefully and resume (Stop, Resume), and be cloned onto a copy of it (Clone);
// StartLagging gives a leader and a truly lagging node with the same chain, and
// CatchUp levels them. ChainID runs a dev chain with another chain id (geth --dev on a
// data directory initialised with a genesis of that chain), for tests with several
// networks. DeployEmitter and StartEmitter make the chain emit logs
// (Tick(counter), topic EmitterTopic) for logs subscriptions.
package testnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GatewayBinary returns $GATEWAY_BIN (the tasks pass the one ./task build made), or the
// gateway built from this module into the test's temporary directory: for tests that
// run it as its own process.
func GatewayBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("GATEWAY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "infura-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/infura-gateway/infura-gateway").CombinedOutput(); err != nil {
		t.Fatalf("go build of the gateway: %v\n%s", err, out)
	}
	return bin
}

// GethVersion is the go-ethereum release the tests are written against; InstallGeth
// builds it and `./task geth` runs InstallGeth.
const GethVersion = "v1.17.10"

// gethPackage is the command `go install` builds at GethVersion.
const gethPackage = "github.com/ethereum/go-ethereum/cmd/geth"

// StartTimeout bounds how long a node may take to answer its first call; generous for a
// loaded 2-core CI machine.
const StartTimeout = 90 * time.Second

// StopTimeout bounds a graceful stop (Stop): geth writes its state journal and exits in
// well under a second here.
const StopTimeout = 60 * time.Second

// Node is a running (or stopped) geth --dev process.
type Node struct {
	HTTPURL, WSURL string

	bin     string
	period  int
	datadir string // "" for an in-memory chain
	chainID uint64 // 0: geth's dev genesis (1337)
	tmpdir  string // a DataDir Launch made for ChainID, removed by Kill
	scratch string // geth's TMPDIR for the process started last, removed when it exits
	ports   Ports
	out     io.Writer // where geth's output goes besides the in-memory log

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// Ports are the loopback TCP ports geth listens on.
type Ports struct{ HTTP, WS, AuthRPC int }

// Option configures Start and Launch.
type Option func(*Node)

// Period sets --dev.period: seconds between blocks (0 mines only on transactions).
func Period(seconds int) Option { return func(n *Node) { n.period = seconds } }

// Output copies geth's output to w as well as to the log Log returns.
func Output(w io.Writer) Option { return func(n *Node) { n.out = w } }

// DataDir keeps the node's chain in dir (geth --datadir) instead of in memory, so it
// survives a Stop and Resume and can be copied (Clone). What the pinned geth --dev does
// with a data directory (checked by this package's tests):
//   - The first start creates the dev account in dir/keystore (empty passphrase) and a
//     dev genesis; later starts, and starts on a copy, reuse both: the same account,
//     unlocked, the same genesis and the blocks stored so far.
//   - A graceful stop (SIGINT: Stop) persists everything up to the head. A crash
//     (SIGKILL: Kill, Restart) loses the blocks since the last graceful stop: the node
//     comes back at that older head and mines different blocks on top of it (a reorg
//     for whoever saw the lost ones).
//   - A node started on a copy with Period(0) keeps the copied head until it is sent a
//     transaction; a transaction makes it mine a block of its own (a fork).
//
// dir is usually in t.TempDir(); geth is given a small cache (--cache), or its database
// preallocates about 1.4 GB of write-ahead log per node.
func DataDir(dir string) Option { return func(n *Node) { n.datadir = dir } }

// Args is geth's command line for a dev node on ports, with its chain in datadir (""
// for memory): the one place geth's flags are written, for the tests and for
// `./task dev` alike.
func Args(period int, ports Ports, datadir string) []string {
	var disk []string
	if datadir != "" {
		disk = []string{"--datadir", datadir, "--cache", "64"}
	}
	return append(disk, "--dev", "--dev.period", strconv.Itoa(period),
		// No NAT probing, IPC socket or p2p listener: a dev node needs only RPC.
		"--nat", "none", "--ipcdisable", "--port", "0", "--maxpeers", "0",
		"--authrpc.addr", "127.0.0.1", "--authrpc.port", strconv.Itoa(ports.AuthRPC),
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(ports.HTTP), "--http.api", "eth,net,web3,dev",
		"--ws", "--ws.addr", "127.0.0.1", "--ws.port", strconv.Itoa(ports.WS), "--ws.api", "eth,net,web3",
		"--verbosity", "2")
}

// FindGeth locates the geth binary: $GETH_BIN, then .bin/geth at the repository root,
// then $PATH, then $GOBIN/$GOPATH/bin.
func FindGeth() (string, error) {
	if p := os.Getenv("GETH_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("GETH_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".bin", "geth")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
		}
	}
	if p, err := exec.LookPath("geth"); err == nil {
		return p, nil
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "geth"); fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New("geth not found: run `./task geth` (installs geth " + GethVersion +
		" into .bin/) or set GETH_BIN")
}

// InstallGeth makes dir/geth the pinned release: a binary there that reports
// GethVersion is kept, anything else is replaced by `go install` (through the Go module
// proxy; about 3 minutes on 2 cores). Build output goes to out.
func InstallGeth(dir string, out io.Writer) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(abs, "geth")
	if IsPinned(bin) {
		return bin, nil
	}
	fmt.Fprintf(out, "installing geth %s into %s (once)\n", GethVersion, abs)
	cmd := exec.Command("go", "install", gethPackage+"@"+GethVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+abs)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w", gethPackage, GethVersion, err)
	}
	if !IsPinned(bin) {
		return "", fmt.Errorf("%s does not report version %s after go install", bin, GethVersion)
	}
	return bin, nil
}

// IsPinned reports whether the geth binary at bin is the GethVersion release.
func IsPinned(bin string) bool {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return false
	}
	want := "Version: " + strings.TrimPrefix(GethVersion, "v")
	for _, line := range strings.Split(string(out), "\n") {
		if line == want || strings.HasPrefix(line, want+"-") {
			return true
		}
	}
	return false
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs geth --dev on free loopback ports and waits until it answers. The node is
// killed when the test ends.
func Start(t testing.TB, opts ...Option) *Node {
	t.Helper()
	bin, err := FindGeth()
	if err != nil {
		t.Fatal(err)
	}
	// A port found free can be taken by another process before geth binds it (seen in
	// CI with many tests starting servers at once): then again on other ports.
	for attempt := 1; ; attempt++ {
		n := newNode(bin, Ports{HTTP: FreePort(t), WS: FreePort(t), AuthRPC: FreePort(t)}, opts)
		if n.chainID != 0 && n.datadir == "" {
			n.datadir = filepath.Join(t.TempDir(), "chain")
		}
		t.Cleanup(n.Kill)
		err := n.start()
		if err == nil {
			return n
		}
		if attempt == startAttempts || !strings.Contains(n.Log(), "address already in use") {
			t.Fatal(err)
		}
		n.Kill()
	}
}

// startAttempts is how many times Start tries fresh ports when one was taken.
const startAttempts = 3

// Launch runs geth --dev from bin on the given ports and waits until it answers. The
// caller stops it with Kill.
func Launch(bin string, ports Ports, opts ...Option) (*Node, error) {
	n := newNode(bin, ports, opts)
	if n.chainID != 0 && n.datadir == "" {
		dir, err := os.MkdirTemp("", "testnode-chain-*")
		if err != nil {
			return nil, err
		}
		n.datadir, n.tmpdir = dir, dir
	}
	if err := n.start(); err != nil {
		n.Kill()
		return nil, err
	}
	return n, nil
}

func newNode(bin string, ports Ports, opts []Option) *Node {
	n := &Node{bin: bin, period: 1, ports: ports}
	for _, o := range opts {
		o(n)
	}
	n.HTTPURL = "http://127.0.0.1:" + strconv.Itoa(ports.HTTP)
	n.WSURL = "ws://127.0.0.1:" + strconv.Itoa(ports.WS)
	return n
}

func (n *Node) start() error {
	if err := n.initChain(); err != nil {
		return err
	}
	// geth --dev without a data directory keeps its account in a keystore it makes in
	// $TMPDIR and removes only on a graceful exit: every Kill (each test's cleanup)
	// left one behind, about 300 an hour in CI. Its own TMPDIR goes with the process.
	scratch, err := os.MkdirTemp("", "testnode-tmp-*")
	if err != nil {
		return fmt.Errorf("cannot make geth's TMPDIR: %w", err)
	}
	n.mu.Lock()
	n.log = new(bytes.Buffer)
	cmd := exec.Command(n.bin, append(Args(n.period, n.ports, n.datadir), n.chainArgs()...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+scratch)
	var w io.Writer = n.log
	if n.out != nil {
		w = io.MultiWriter(n.log, n.out)
	}
	cmd.Stdout = &syncWriter{mu: &n.mu, w: w}
	cmd.Stderr = cmd.Stdout
	// Its own process group: a terminal's Ctrl-C reaches the dev command, which stops
	// geth last, and Kill takes down anything geth started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		_ = os.RemoveAll(scratch)
		return fmt.Errorf("cannot start geth: %w", err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.scratch = cmd, done, scratch
	n.mu.Unlock()
	go func() { _ = cmd.Wait(); _ = os.RemoveAll(scratch); close(done) }()

	deadline := time.Now().Add(StartTimeout)
	for {
		if _, err := n.call("eth_blockNumber"); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("geth exited during start:\n%s", n.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("geth did not answer within %v:\n%s", StartTimeout, n.Log())
		}
		time.Sleep(50 * time.Millisecond) // readiness poll of an external process
	}
}

// Exited is closed when the geth process started last exits.
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done
}

// Kill stops the node at once (SIGKILL), as a crash would, and waits for it to exit.
// A data directory Launch made for ChainID is removed with it.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done, tmp := n.cmd, n.done, n.tmpdir
	n.cmd = nil
	n.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if tmp != "" {
		_ = os.RemoveAll(tmp)
	}
}

// Restart kills the node and starts it again on the same ports: a fresh in-memory
// chain, or, with a DataDir, the chain as of its last graceful stop.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Kill()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

// Log returns what geth printed so far.
func (n *Node) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.log == nil {
		return ""
	}
	return n.log.String()
}

// Raw posts body to the node's HTTP endpoint and returns the raw response body.
func (n *Node) Raw(t testing.TB, body string) []byte {
	t.Helper()
	out, err := n.raw([]byte(body))
	if err != nil {
		t.Fatalf("node call %s: %v", body, err)
	}
	return out
}

func (n *Node) raw(body []byte) ([]byte, error) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(n.HTTPURL, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, out)
	}
	return out, nil
}

// Call makes a JSON-RPC call on the node and returns its result (failing the test on
// a JSON-RPC error).
func (n *Node) Call(t testing.TB, method string, params ...any) json.RawMessage {
	t.Helper()
	res, err := n.call(method, params...)
	if err != nil {
		t.Fatalf("node %s: %v", method, err)
	}
	return res
}

func (n *Node) call(method string, params ...any) (json.RawMessage, error) {
	if params == nil {
		params = []any{}
	}
	req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	out, err := n.raw(req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("bad response %q: %w", out, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return resp.Result, nil
}

// SendTx sends a value transfer from the unlocked dev account and waits until it is
// mined. It returns the hash and the number (hex) of the block that holds it.
func (n *Node) SendTx(t testing.TB) (txHash, blockNumber string) {
	t.Helper()
	var accounts []string
	if err := json.Unmarshal(n.Call(t, "eth_accounts"), &accounts); err != nil || len(accounts) == 0 {
		t.Fatalf("no dev account: %v", err)
	}
	tx := map[string]string{"from": accounts[0], "to": "0x000000000000000000000000000000000000dEaD", "value": "0x1"}
	if err := json.Unmarshal(n.Call(t, "eth_sendTransaction", tx), &txHash); err != nil {
		t.Fatalf("eth_sendTransaction: %v", err)
	}
	r, err := n.waitReceipt(txHash, StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return txHash, r.BlockNumber
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

// Write is called by exec's copying goroutine while tests read the log.
func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
