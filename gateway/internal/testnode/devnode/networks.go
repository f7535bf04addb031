package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// devNetwork is one chain of `devnode networks`: a geth --dev node and its entry in the
// gateway's networks: list.
type devNetwork struct {
	Name    string
	ChainID uint64
	Ports   testnode.Ports
	Node    *testnode.Node
}

// Host is the Host header that selects the network: *.localhost resolves to loopback.
func (n *devNetwork) Host() string { return n.Name + ".localhost" }

// networksFlags are the flags of `devnode networks`.
type networksFlags struct {
	nets    [2]devNetwork
	bin     string
	config  string // the gateway configuration file written
	gateway string // host:port the printed curl lines use
	logDir  string
	period  int
}

func parseNetworksFlags(args []string, stderr io.Writer) (*networksFlags, []string, error) {
	f := &networksFlags{}
	fs := flag.NewFlagSet("devnode networks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	first, second := &f.nets[0], &f.nets[1]
	fs.StringVar(&first.Name, "name", "dev1337", "the first network's name (geth --dev's own chain, id 1337)")
	fs.IntVar(&first.Ports.HTTP, "http-port", 8545, "the first node's HTTP port")
	fs.IntVar(&first.Ports.WS, "ws-port", 8546, "the first node's websocket port")
	fs.IntVar(&first.Ports.AuthRPC, "authrpc-port", 8551, "the first node's engine API port (loopback, unused)")
	fs.StringVar(&second.Name, "name2", "dev31337", "the second network's name")
	fs.Uint64Var(&second.ChainID, "chain-id2", 31337, "the second network's chain id (not 1337)")
	fs.IntVar(&second.Ports.HTTP, "http-port2", 8645, "the second node's HTTP port")
	fs.IntVar(&second.Ports.WS, "ws-port2", 8646, "the second node's websocket port")
	fs.IntVar(&second.Ports.AuthRPC, "authrpc-port2", 8651, "the second node's engine API port (loopback, unused)")
	fs.IntVar(&f.period, "period", 1, "seconds between blocks on both chains (0: only on transactions)")
	fs.StringVar(&f.bin, "geth", "", "geth binary (default: $GETH_BIN, .bin/geth, $PATH)")
	fs.StringVar(&f.config, "config", ".bin/networks.yaml", "the gateway configuration file to write")
	fs.StringVar(&f.gateway, "gateway", "localhost:8000", "the gateway's address, for the printed curl lines")
	fs.StringVar(&f.logDir, "log-dir", ".bin", "directory for the nodes' output (geth-<name>.log)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	first.ChainID = testnode.DevChainID
	if second.ChainID == 0 || second.ChainID == testnode.DevChainID {
		return nil, nil, fmt.Errorf("-chain-id2 %d: the second chain needs an id of its own (not 0, not 1337)", second.ChainID)
	}
	if first.Name == second.Name {
		return nil, nil, fmt.Errorf("-name and -name2 are both %q", first.Name)
	}
	return f, fs.Args(), nil
}

// networksYAML is the gateway configuration of the two networks, in the networks:
// format: each by its path prefix (/<name>/...) and its Host (<name>.localhost); the
// first is the default network.
func networksYAML(nets []devNetwork) string {
	var b strings.Builder
	b.WriteString("# Written by `./task dev:networks` (devnode networks) on every run: two geth --dev chains\n")
	b.WriteString("# behind one gateway. Edit the task's flags, not this file.\n")
	b.WriteString("networks:\n")
	for i, n := range nets {
		fmt.Fprintf(&b, "  - name: %s\n", n.Name)
		fmt.Fprintf(&b, "    chain_id: %d\n", n.ChainID)
		fmt.Fprintf(&b, "    hosts: [%s]\n", n.Host())
		if i == 0 {
			b.WriteString("    default: true\n")
		}
		b.WriteString("    upstreams:\n")
		fmt.Fprintf(&b, "      - {name: geth-%s, http: \"http://127.0.0.1:%d\", ws: \"ws://127.0.0.1:%d\"}\n",
			n.Name, n.Ports.HTTP, n.Ports.WS)
	}
	return b.String()
}

// curlLines are the commands printed for people: each network's eth_chainId by path
// and by Host.
func curlLines(gateway string, nets []devNetwork) string {
	const body = `'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'`
	var b strings.Builder
	for _, n := range nets {
		fmt.Fprintf(&b, "%s (chain id %d, %s):\n", n.Name, n.ChainID, testnode.Quantity(n.ChainID))
		fmt.Fprintf(&b, "  curl -X POST %s/%s/ -d %s\n", gateway, n.Name, body)
		fmt.Fprintf(&b, "  curl -X POST %s/ -H 'Host: %s' -d %s\n", gateway, n.Host(), body)
	}
	return b.String()
}

// startNetworks checks the ports, starts both nodes and writes the configuration
// file. On error the nodes started are killed.
func startNetworks(f *networksFlags, stderr io.Writer) ([]devNetwork, []io.Closer, error) {
	nets := f.nets[:]
	for _, n := range nets {
		for _, p := range []int{n.Ports.HTTP, n.Ports.WS, n.Ports.AuthRPC} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				return nil, nil, fmt.Errorf("port %d (%s) is in use; stop what listens there", p, n.Name)
			}
			l.Close()
		}
	}
	bin := f.bin
	if bin == "" {
		var err error
		if bin, err = testnode.FindGeth(); err != nil {
			return nil, nil, err
		}
	}
	if err := os.MkdirAll(f.logDir, 0o755); err != nil {
		return nil, nil, err
	}
	var closers []io.Closer
	fail := func(err error) ([]devNetwork, []io.Closer, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
		return nil, nil, err
	}
	for i := range nets {
		n := &nets[i]
		logPath := filepath.Join(f.logDir, "geth-"+n.Name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, logf)
		node, err := testnode.Launch(bin, n.Ports, testnode.Period(f.period), testnode.ChainID(n.ChainID), testnode.Output(logf))
		if err != nil {
			return fail(fmt.Errorf("%s: %w", n.Name, err))
		}
		n.Node = node
		closers = append(closers, killer{node})
		fmt.Fprintf(stderr, "devnode: %s: geth %s --dev, chain id %d, on %s and %s (log: %s)\n",
			n.Name, testnode.GethVersion, n.ChainID, node.HTTPURL, node.WSURL, logPath)
	}
	if err := os.MkdirAll(filepath.Dir(f.config), 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(f.config, []byte(networksYAML(nets)), 0o644); err != nil {
		return fail(err)
	}
	return nets, closers, nil
}

type killer struct{ n *testnode.Node }

func (k killer) Close() error { k.n.Kill(); return nil }

// runNetworks is `devnode networks [flags] [-- cmd args]`: two dev chains (1337 and
// -chain-id2), the gateway configuration file of both, the curl lines, then cmd (the
// gateway on that file) until it exits, or until Ctrl-C when there is none.
func runNetworks(args []string, stderr io.Writer) int {
	f, cmdArgs, err := parseNetworksFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "devnode:", err)
		return 2
	}
	sig := notifySignals()
	nets, closers, err := startNetworks(f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "devnode:", err)
		return 1
	}
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}()
	fmt.Fprintf(stderr, "devnode: gateway configuration in %s; once the gateway is up:\n%s", f.config, curlLines(f.gateway, nets))
	exited := make([]<-chan struct{}, len(nets))
	for i, n := range nets {
		exited[i] = n.Node.Exited()
	}
	return supervise(cmdArgs, sig, exited, f.logDir, stderr)
}
