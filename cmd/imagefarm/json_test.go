package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupCommandsPrintJSON: the commands that make files (ca init, ca
// issue, key init, nats-config) print what they made as JSON with --json,
// and every path they print exists.
func TestSetupCommandsPrintJSON(t *testing.T) {
	dir := t.TempDir()
	ca, keys, nats := filepath.Join(dir, "ca"), filepath.Join(dir, "keys"), filepath.Join(dir, "nats")
	for _, tc := range []struct {
		args  []string
		paths []string // JSON fields that name files
		want  map[string]string
	}{
		{[]string{"ca", "init", "--dir", ca}, []string{"cert", "key"}, nil},
		{[]string{"ca", "issue", "--dir", ca, "--node", "bench-3"}, []string{"cert", "key"},
			map[string]string{"subject": "node certificate bound to imagefarm://node/bench-3"}},
		{[]string{"key", "init", "--out", keys}, []string{"key", "public_key"}, nil},
		{[]string{"nats-config", "--dir", nats, "--node", "n1", "--node", "n2"}, []string{"server_config"}, nil},
	} {
		out := mustRun(t, append(tc.args, "--json")...)
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Errorf("%s --json printed %q: %v", strings.Join(tc.args[:2], " "), out, err)
			continue
		}
		for _, field := range tc.paths {
			if p, _ := got[field].(string); p == "" || !fileExists(p) {
				t.Errorf("%s --json: %s = %v, want a file it made:\n%s", strings.Join(tc.args[:2], " "), field, got[field], out)
			}
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s --json: %s = %v, want %q", strings.Join(tc.args[:2], " "), k, got[k], v)
			}
		}
	}
	var nc natsConfigJSON
	json.Unmarshal([]byte(mustRun(t, "nats-config", "--dir", nats, "--node", "n1", "--json")), &nc)
	if len(nc.Credentials) != 2 || !fileExists(nc.Credentials[0]) || !fileExists(nc.Credentials[1]) {
		t.Errorf("nats-config --json credentials = %v, want the controller's and n1's files", nc.Credentials)
	}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
