// Command devnode runs the tests' geth --dev node (package testnode: one definition of
// geth's version and flags) for people: on the standard ports, next to a command such as
// the gateway. `./task geth` and `./task dev` run it.
//
//	devnode install [-bin .bin]     build the pinned geth into .bin/ unless it is there
//	devnode version                 print the pinned geth version
//	devnode [flags] [-- cmd args]   start geth --dev; run cmd until it exits (or until
//	                                Ctrl-C when there is none), then stop geth
//	devnode networks [flags] [-- cmd args]
//	                                the same with two chains (1337 and another chain id)
//	                                and the gateway configuration file of both networks
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/infura-gateway/infura-gateway/gateway/internal/testnode"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Println(testnode.GethVersion)
			return 0
		case "networks":
			return runNetworks(args[1:], stderr)
		case "install":
			fs := flag.NewFlagSet("devnode install", flag.ContinueOnError)
			bin := fs.String("bin", ".bin", "directory to install geth into")
			if err := fs.Parse(args[1:]); err != nil {
				return 2
			}
			if _, err := testnode.InstallGeth(*bin, stderr); err != nil {
				fmt.Fprintln(stderr, "devnode:", err)
				return 1
			}
			return 0
		}
	}
	fs := flag.NewFlagSet("devnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := testnode.Ports{}
	fs.IntVar(&ports.HTTP, "http-port", 8545, "geth HTTP JSON-RPC port (the gateway's default upstream)")
	fs.IntVar(&ports.WS, "ws-port", 8546, "geth websocket port (the gateway's default upstream)")
	fs.IntVar(&ports.AuthRPC, "authrpc-port", 8551, "geth engine API port (loopback, unused)")
	period := fs.Int("period", 1, "seconds between blocks (0: only on transactions)")
	bin := fs.String("geth", "", "geth binary (default: $GETH_BIN, .bin/geth, $PATH)")
	logPath := fs.String("log", ".bin/geth-dev.log", "file for geth's output")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cmdArgs := fs.Args()

	for _, p := range []int{ports.HTTP, ports.WS, ports.AuthRPC} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintf(stderr, "devnode: port %d is in use; stop what listens there (or run the gateway alone: ./task run)\n", p)
			return 1
		}
		l.Close()
	}
	if *bin == "" {
		var err error
		if *bin, err = testnode.FindGeth(); err != nil {
			fmt.Fprintln(stderr, "devnode:", err)
			return 1
		}
	}
	if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
		fmt.Fprintln(stderr, "devnode:", err)
		return 1
	}
	logf, err := os.Create(*logPath)
	if err != nil {
		fmt.Fprintln(stderr, "devnode:", err)
		return 1
	}
	defer logf.Close()

	sig := notifySignals()
	node, err := testnode.Launch(*bin, ports, testnode.Period(*period), testnode.Output(logf))
	if err != nil {
		fmt.Fprintln(stderr, "devnode:", err)
		return 1
	}
	defer node.Kill()
	fmt.Fprintf(stderr, "devnode: geth %s --dev on %s and %s (chain id 1337; log: %s)\n",
		testnode.GethVersion, node.HTTPURL, node.WSURL, *logPath)
	return supervise(cmdArgs, sig, []<-chan struct{}{node.Exited()}, *logPath, stderr)
}

// notifySignals handles SIGINT and SIGTERM from here on: geth and the command run in
// their own process groups, so each gets exactly one signal, from this process.
func notifySignals() chan os.Signal {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	return sig
}

// supervise runs cmdArgs until it exits, passing signals on, or, without a command,
// waits for a signal; a geth exiting ends it with an error. It returns
// the exit code; the caller stops geth. nodes are the geth processes' Exited channels.
func supervise(cmdArgs []string, sig chan os.Signal, nodes []<-chan struct{}, logPath string, stderr io.Writer) int {
	gethExited := make(chan struct{}, len(nodes))
	for _, ch := range nodes {
		go func() { <-ch; gethExited <- struct{}{} }()
	}
	if len(cmdArgs) == 0 {
		select {
		case <-sig:
			return 0
		case <-gethExited:
			fmt.Fprintf(stderr, "devnode: geth exited; see %s\n", logPath)
			return 1
		}
	}
	cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "devnode:", err)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case s := <-sig:
			// The whole group: `go run` passes nothing on, its child must hear it.
			_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
		case <-gethExited:
			fmt.Fprintf(stderr, "devnode: geth exited; see %s\n", logPath)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			<-exited
			return 1
		case err := <-exited:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			if err != nil {
				fmt.Fprintln(stderr, "devnode:", err)
				return 1
			}
			return 0
		}
	}
}
