package gateway

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves Go's profiler on its own listener (never on the public port), for
// profiling a running gateway: go tool pprof http://127.0.0.1:6060/debug/pprof/profile
func (s *Server) startPprof() error {
	if s.cfg.PprofListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.PprofListen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("pprof server stopped", "err", err)
		}
	}()
	s.closers = append(s.closers, func() { _ = srv.Close() })
	s.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}
