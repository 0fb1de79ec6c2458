package main

import (
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // /debug/pprof/ on the default mux
	"runtime"
)

func init() {
	expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
}

// serveDebug serves Go's profiles (/debug/pprof/) and counters
// (/debug/vars: memory statistics and the goroutine count) on addr, for
// operators chasing a leak and for the soak test. They say much about the
// process: keep addr on localhost.
func serveDebug(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	slog.Info("debug endpoint serving", "addr", lis.Addr().String())
	go http.Serve(lis, http.DefaultServeMux)
	return nil
}
