package testenv

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// Tool returns the path of the command name, or fails the test naming the
// Debian package that has it: tests check their results with tools this
// project did not write, and scripts/test.sh installs every one of them.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (scripts/test.sh does)", name, debianPackage)
	}
	return p
}

// Run runs the command name from debianPackage and returns its standard
// output, failing the test with its standard error if it fails.
func Run(t testing.TB, debianPackage, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), Tool(t, name, debianPackage), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// RunStdin is Run with stdin as the command's standard input.
func RunStdin(t testing.TB, stdin, debianPackage, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), Tool(t, name, debianPackage), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}
