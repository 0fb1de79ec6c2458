package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestDebugEndpointKeepsTheCommandLine: a token given as a flag is on the
// command line, which Go's default /debug/vars and /debug/pprof/cmdline
// serve; the debug endpoint serves neither, and still serves the counters.
func TestDebugEndpointKeepsTheCommandLine(t *testing.T) {
	const secret = "ift_debugEndpointSecretTokenValue"
	args := os.Args
	os.Args = append(append([]string{}, args...), "--token", secret)
	t.Cleanup(func() { os.Args = args })

	srv := httptest.NewServer(debugHandler())
	defer srv.Close()
	for _, path := range []string{"/debug/vars", "/debug/pprof/cmdline", "/debug/pprof/"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), secret) {
			t.Errorf("GET %s shows the token given on the command line:\n%s", path, body)
		}
		if path == "/debug/vars" {
			var vars map[string]json.RawMessage
			if err := json.Unmarshal(body, &vars); err != nil {
				t.Fatalf("GET /debug/vars: %v\n%s", err, body)
			}
			if vars["memstats"] == nil || vars["goroutines"] == nil {
				t.Errorf("GET /debug/vars lacks memstats or goroutines: %s", body[:min(len(body), 200)])
			}
		}
	}
}
