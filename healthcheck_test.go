package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The healthcheck subcommand: 0 when the URL answers 200, 1 otherwise, 0 for -h (as the
// gateway's own -h), 2 for a bad flag.
func TestHealthcheckExitCodes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"-url", ok.URL}, 0},
		{[]string{"-url", down.URL}, 1},
		{[]string{"-url", "http://127.0.0.1:1/health"}, 1},
		{[]string{"-h"}, 0},
		{[]string{"-bogus"}, 2},
	} {
		if got := healthcheck(c.args, io.Discard); got != c.want {
			t.Errorf("healthcheck %v = %d, want %d", c.args, got, c.want)
		}
	}
}
