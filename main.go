// Command infura-gateway serves Ethereum JSON-RPC data from an upstream node (Infura,
// any provider, or a local development node) over HTTP REST routes, a JSON-RPC
// endpoint, and websockets. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/infura-gateway/infura-gateway/gateway"
	"github.com/infura-gateway/infura-gateway/gateway/config"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return healthcheck(args[1:], stderr)
		case "version", "-version", "--version":
			fmt.Fprintln(stdout, "infura-gateway", version)
			return 0
		}
	}
	args, memLimit, err := memLimitSettings(args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "infura-gateway: invalid configuration:", err)
		return 2
	}
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		printMemLimitUsage(stderr)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "infura-gateway: invalid configuration:", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	memLimit.apply(log)
	srv, err := gateway.New(cfg, gateway.Options{Logger: log, Version: version, Getenv: getenv})
	if err != nil {
		fmt.Fprintln(stderr, "infura-gateway:", err)
		return 2
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-served:
			srv.Close()
			log.Error("server stopped", "err", err)
			return 1
		case <-hup:
			_ = srv.ReloadConfig() // logs its outcome
		case s := <-sig:
			log.Info("signal received, shutting down", "signal", s.String())
			break wait
		}
	}
	// A second signal skips the drain.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = srv.Shutdown(ctx)
	cancel()
	if err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// healthcheck is for container HEALTHCHECKs on images without a shell or curl:
// it exits 0 when the URL answers 200 within the timeout.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8000/health", "URL that must answer 200 (liveness: a draining or starting gateway is still alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // asked for: usage printed, as the gateway's own -h
		}
		return 2
	}
	c := http.Client{Timeout: *timeout}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck:", *url, "answered", resp.Status)
		return 1
	}
	return 0
}
