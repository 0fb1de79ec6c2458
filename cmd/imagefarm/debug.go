package main

import (
	"encoding/json"
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
	go http.Serve(lis, debugHandler())
	return nil
}

// debugHandler is the debug endpoint's mux. It leaves out the command line
// that expvar (/debug/vars "cmdline") and pprof (/debug/pprof/cmdline)
// serve by default: it can hold a --token or a store URL's secret.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the command line is not served: it can hold secrets", http.StatusNotFound)
	})
	mux.HandleFunc("/debug/vars", serveVars)
	return mux
}

// serveVars writes every expvar variable but the command line, as expvar's
// own handler does.
func serveVars(w http.ResponseWriter, r *http.Request) {
	vars := map[string]json.RawMessage{}
	expvar.Do(func(kv expvar.KeyValue) {
		if kv.Key != "cmdline" {
			vars[kv.Key] = json.RawMessage(kv.Value.String())
		}
	})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(vars)
}
