package main

import (
	"strings"
	"testing"
)

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
		{[]string{"job", "submit", "x:1", "--label-job", "ticket"}, `--label-job "ticket": ticket must be formatted as key=value`},
		{[]string{"controller", "--heartbeat-ttl", "0"}, `--heartbeat-ttl "0": want more than 0, such as 15s (the default)`},
		{[]string{"job", "ls", "--bogus"}, "unknown flag: --bogus (imagefarm job ls --help lists its flags)"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("imagefarm %s = %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestLocalErrorsReadWell: the errors of what the CLI does itself (the
// catalog, the store, media) reach its last line without the packages'
// internal tags.
func TestLocalErrorsReadWell(t *testing.T) {
	store := "file://" + t.TempDir()
	img := writeDiskImage(t, 1<<20, 12)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "inspect", "nope:1"}, "image not found: nope:1 (list images with `imagefarm image ls`)"},
		{[]string{"image", "push", "bad ref", img}, `image ref "bad ref" has no ':': use NAME:VERSION`},
		{[]string{"media", "build", "--winpe", "nope:1", "--wim", "nope:2", "--model", "X", "--out", t.TempDir() + "/key.img"},
			"--winpe nope:1: image not found: nope:1"},
	} {
		_, err := run(t, append([]string{"--store", store, "--controller", ""}, tc.args...)...)
		if err == nil {
			t.Errorf("imagefarm %s succeeded, want %q", strings.Join(tc.args, " "), tc.want)
			continue
		}
		if got := cliErrors.Message(err); !strings.Contains(got, tc.want) || strings.Contains(got, "catalog: ") {
			t.Errorf("imagefarm %s said %q, want %q without the catalog's tag", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	// The binary's last line is the same.
	p := startCLI(t, "--store", store, "--controller", "", "image", "inspect", "nope:1")
	if out := p.output(t, "catalog: "); out != "imagefarm: image not found: nope:1 (list images with `imagefarm image ls`)\n" || p.code != 1 {
		t.Errorf("imagefarm image inspect nope:1 exited %d, saying %q", p.code, out)
	}
}
