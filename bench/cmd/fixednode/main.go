// Command fixednode is a fixed-answer Ethereum JSON-RPC node for benchmarks:
// fasthttp on -http, the same handler (JSON-RPC over websocket) on -ws.
// It is the CPU floor the benchmark suite compares the gateway against.
//
//	fixednode -http 127.0.0.1:8545 -ws 127.0.0.1:8546 -head-interval 1s
//
// GET /counts reports requests per method and heads produced; POST /head
// produces a head on demand.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/infura-gateway/infura-gateway/bench/internal/fixednode"
)

func main() {
	httpAddr := flag.String("http", "127.0.0.1:8545", "HTTP JSON-RPC listen address (also accepts websocket upgrades)")
	wsAddr := flag.String("ws", "127.0.0.1:8546", "websocket JSON-RPC listen address (empty: HTTP port only)")
	interval := flag.Duration("head-interval", 0, "produce a new head (eth_blockNumber+1, newHeads notification) every interval; 0 disables")
	start := flag.Uint64("start-block", 21_000_000, "block number of the first head")
	flag.Parse()

	node := fixednode.New(*start)
	stop := make(chan struct{})
	if *interval > 0 {
		go node.RunHeads(*interval, stop)
	}
	errc := make(chan error, 2)
	serve := func(kind, addr string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errc <- err
			return
		}
		// The suite waits for this line to know the ports are bound.
		fmt.Fprintf(os.Stderr, "fixednode %s listening on %s\n", kind, ln.Addr())
		errc <- node.Server().Serve(ln)
	}
	go serve("http", *httpAddr)
	if *wsAddr != "" {
		go serve("ws", *wsAddr)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		log.Fatalf("fixednode: %v", err)
	case <-sig:
		close(stop)
		// Give the ticker a moment to observe stop; servers die with the process.
		time.Sleep(10 * time.Millisecond)
	}
}
