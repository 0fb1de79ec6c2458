package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// secretEnv sets every environment variable that holds a secret, or may,
// to a value with "s3cret" in it.
func secretEnv(t *testing.T) {
	t.Setenv("IMAGEFARM_TOKEN", "ift_s3cretTOKEN")
	t.Setenv("IMAGEFARM_STORE", "s3://AKIAEXAMPLE:s3cretSTORE@bucket/p?endpoint=127.0.0.1:9000")
	t.Setenv("IMAGEFARM_NATS", "nats://imager:s3cretNATS@127.0.0.1:4222")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cretAWS")
}

// commandPaths lists the path of every command under cmd, cmd's own first.
func commandPaths(cmd *cobra.Command, path []string) [][]string {
	out := [][]string{path}
	for _, sub := range cmd.Commands() {
		out = append(out, commandPaths(sub, append(append([]string{}, path...), sub.Name()))...)
	}
	return out
}

// TestNoSecretFromTheEnvironmentIsPrinted: with a token, S3 keys and a NATS
// password in the environment, the help of every command shows none of
// them (a flag's default from the environment is hidden or redacted), and
// neither does an error about the store URL.
func TestNoSecretFromTheEnvironmentIsPrinted(t *testing.T) {
	secretEnv(t)
	paths := commandPaths(newRootCmd(), nil)
	if len(paths) < 20 {
		t.Fatalf("found %d commands, want them all", len(paths))
	}
	for _, path := range paths {
		out, err := run(t, append(path, "--help")...)
		if err != nil || strings.Contains(out, "s3cret") {
			t.Errorf("imagefarm %s --help = %v, and it shows a secret:\n%s", strings.Join(path, " "), err, out)
		}
	}
	for _, want := range []struct{ cmd, shows string }{
		{"imager", `NATS server URL (env IMAGEFARM_NATS) (default "nats://xxxxx@127.0.0.1:4222")`},
		{"image", `(env IMAGEFARM_STORE) (default "s3://xxxxx@bucket/p?endpoint=127.0.0.1:9000")`},
		{"image", "imagefarm token create) (env IMAGEFARM_TOKEN)\n"},
	} {
		if out, _ := run(t, want.cmd, "--help"); !strings.Contains(out, want.shows) {
			t.Errorf("imagefarm %s --help does not show %q:\n%s", want.cmd, want.shows, out)
		}
	}
	out, err := run(t, "image", "ls")
	if err == nil || strings.Contains(err.Error()+out, "s3cret") || !strings.Contains(err.Error(), "carries no credentials") {
		t.Errorf("image ls with S3 keys in IMAGEFARM_STORE = %v (%s), want it refused without the keys", err, out)
	}
}
