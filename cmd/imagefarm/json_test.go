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

// TestFlagErrorsSayWhatTheFlagWants: a value a flag cannot take is named
// with what the flag wants, not in the parser's words, and an unknown
// flag points at the command's help.
func TestFlagErrorsSayWhatTheFlagWants(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "--limit", "-1"}, `--limit "-1": want a whole number from 0 to 4294967295`},
		{[]string{"job", "submit", "x:1", "--count", "5000000000"}, `--count "5000000000": want a whole number from 0 to 4294967295`},
		{[]string{"job", "ls", "--limit", "ten"}, `--limit "ten": want a whole number`},
		{[]string{"job", "submit", "x:1", "--count", "1", "--removable=maybe"}, `--removable "maybe": want true or false`},
		{[]string{"controller", "--heartbeat-ttl", "5"}, `--heartbeat-ttl "5": want a duration such as 90s, 5m or 1h30m`},
		{[]string{"job", "submit", "x:1", "--label-job", "ticket"}, `--label-job "ticket": want KEY=VALUE`},
		{[]string{"job", "ls", "--bogus"}, "unknown flag: --bogus (imagefarm job ls --help lists its flags)"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("imagefarm %s = %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
