package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv"
)

// DebianKernel returns the kernel that imagefarm netboot build-env takes
// by default (the newest /boot/vmlinuz-*, from Debian's linux-image-amd64)
// and its modules folder, or fails the test naming the package:
// deploy-environment tests build from the kernel a depot would use, and
// scripts/test.sh installs it.
func DebianKernel(t testing.TB) deployenv.Kernel {
	t.Helper()
	k, err := deployenv.FindKernel("", "")
	if err != nil {
		t.Fatalf("%v (the Debian package linux-image-amd64 has one; scripts/test.sh installs it)", err)
	}
	return k
}

// StaticProgram builds a small static Linux program (Go, CGO_ENABLED=0)
// that prints "init" and returns its path: an init program for
// deploy-environment builds that do not boot it.
func StaticProgram(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"init\") }\n",
		"go.mod":  "module staticinit\n\ngo 1.22\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}
