package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway"
	"github.com/infura-gateway/infura-gateway/gateway/config"
	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

// `devnode networks` (./task dev:networks) on free ports: two real chains with distinct
// ids that both mine, a configuration file in the networks: format that the gateway's
// loader takes as two networks with their hosts and upstreams, curl lines by path and
// by Host, and a gateway on that file answering each network's chain id both ways.
func TestDevNetworks(t *testing.T) {
	dir := t.TempDir()
	port := func() string { return strconv.Itoa(testnode.FreePort(t)) }
	args := []string{"-http-port", port(), "-ws-port", port(), "-authrpc-port", port(),
		"-http-port2", port(), "-ws-port2", port(), "-authrpc-port2", port(),
		"-config", filepath.Join(dir, "networks.yaml"), "-log-dir", dir, "-gateway", "localhost:8000"}
	f, rest, err := parseNetworksFlags(args, io.Discard)
	if err != nil || len(rest) != 0 {
		t.Fatalf("flags: %v %v", err, rest)
	}
	var out bytes.Buffer
	nets, closers, err := startNetworks(f, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	})

	for _, tc := range []struct {
		name, chainID string
	}{{"dev1337", `"0x539"`}, {"dev31337", `"0x7a69"`}} {
		var n *devNetwork
		for i := range nets {
			if nets[i].Name == tc.name {
				n = &nets[i]
			}
		}
		if n == nil {
			t.Fatalf("no network %s in %+v", tc.name, nets)
		}
		if got := string(n.Node.Call(t, "eth_chainId")); got != tc.chainID {
			t.Fatalf("%s: eth_chainId %s, want %s", tc.name, got, tc.chainID)
		}
		n.Node.WaitBlock(t, n.Node.BlockNumber(t)+1)
	}

	cfg, err := config.Load([]string{"-config", f.config, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("the gateway does not load the written configuration: %v", err)
	}
	list := cfg.NetworkList()
	if len(list) != 2 {
		t.Fatalf("%d networks: %+v", len(list), list)
	}
	for i, n := range list {
		want := nets[i]
		if n.Name != want.Name || n.ChainID != want.ChainID || len(n.Hosts) != 1 || n.Hosts[0] != want.Host() ||
			n.Default != (i == 0) || len(n.Upstreams) != 1 ||
			n.Upstreams[0].HTTPURL != want.Node.HTTPURL || n.Upstreams[0].WSURL != want.Node.WSURL {
			t.Fatalf("network %d: %+v, want %s (chain %d, host %s, %s, %s)", i, n, want.Name, want.ChainID,
				want.Host(), want.Node.HTTPURL, want.Node.WSURL)
		}
	}
	lines := curlLines(f.gateway, nets)
	for _, want := range []string{"curl -X POST localhost:8000/dev1337/ ", "curl -X POST localhost:8000/dev31337/ ",
		"-H 'Host: dev1337.localhost'", "-H 'Host: dev31337.localhost'"} {
		if !strings.Contains(lines, want) {
			t.Fatalf("curl lines lack %q:\n%s", want, lines)
		}
	}

	// The gateway on the file, asked as the curl lines ask.
	srv, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "devnode-test"})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	base := "http://" + ln.Addr().String()
	const body = `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`
	for _, tc := range []struct {
		name, path, host, want string
	}{
		{"dev1337 by path", "/dev1337/", "", `"0x539"`},
		{"dev31337 by path", "/dev31337/", "", `"0x7a69"`},
		{"dev1337 by host", "/", "dev1337.localhost", `"0x539"`},
		{"dev31337 by host", "/", "dev31337.localhost", `"0x7a69"`},
		{"default network", "/", "", `"0x539"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			deadline := time.Now().Add(testnode.StartTimeout)
			for {
				req, err := http.NewRequest(http.MethodPost, base+tc.path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if tc.host != "" {
					req.Host = tc.host
				}
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got = string(b)
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no answer within %v: %v %s", testnode.StartTimeout, err, got)
				}
				time.Sleep(100 * time.Millisecond) // the gateway's upstreams connecting
			}
			if !strings.Contains(got, `"result":`+tc.want) {
				t.Fatalf("answer %s, want result %s", got, tc.want)
			}
		})
	}
}
