package netboot

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewEnvServedToNextBootsOnly: SetEnv gives the next boots the new
// deploy environment, by its id in their scripts and GRUB configs, while a
// boot that got its script before still loads the files it started with,
// over HTTP and TFTP; after keepEnvs newer versions the oldest is no
// longer served, and its boot is told to netboot again. A malformed id or
// a missing file is refused and changes nothing.
func TestNewEnvServedToNextBootsOnly(t *testing.T) {
	var log logBuffer
	b := newBootFiles(t)
	cfg := loopbackConfig(t, b.files, &log)
	cfg.Planner = Static{Deploy: map[string]bool{"52:54:00:12:34:56": true}}
	s := start(t, cfg)
	const plan = "/plan.ipxe?mac=52-54-00-12-34-56&arch=bios"
	if _, body := httpGet(t, cfg, plan); !strings.Contains(body, "/files/local/vmlinuz ") {
		t.Fatalf("first script:\n%s\nwant the local environment's kernel", body)
	}
	v2 := newEnv(t, "v2")
	if err := s.SetEnv(v2.env); err != nil {
		t.Fatal(err)
	}
	if _, body := httpGet(t, cfg, plan); !strings.Contains(body, "/files/v2/vmlinuz ") || !strings.Contains(body, "/files/v2/initramfs ") {
		t.Errorf("script after SetEnv:\n%s\nwant v2's files", body)
	}
	for path, want := range map[string][]byte{"/files/local/vmlinuz": b.bytes["vmlinuz"], "/files/local/initramfs": b.bytes["initramfs"],
		"/files/v2/vmlinuz": v2.kernel, "/files/vmlinuz": v2.kernel} {
		if code, body := httpGet(t, cfg, path); code != http.StatusOK || !bytes.Equal([]byte(body), want) {
			t.Errorf("GET %s = %d, %d bytes; want 200 and %d bytes", path, code, len(body), len(want))
		}
	}
	if got, _, err := tftpGet(t, cfg, "env/local/vmlinuz"); err != nil || !bytes.Equal(got, b.bytes["vmlinuz"]) {
		t.Errorf("TFTP env/local/vmlinuz = %d bytes, %v; want the first version's kernel", len(got), err)
	}
	if grub, _, err := tftpGet(t, cfg, "grub/imagefarm/52:54:00:12:34:56.cfg"); err != nil || !strings.Contains(string(grub), "linux /env/v2/vmlinuz ") {
		t.Errorf("GRUB config = %q, %v; want v2's kernel", grub, err)
	}
	for _, id := range []string{"v3", "v4"} {
		if err := s.SetEnv(newEnv(t, id).env); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := httpGet(t, cfg, "/files/local/vmlinuz"); code != http.StatusNotFound || !strings.Contains(body, "netboot again") {
		t.Errorf("GET of a version %d versions old = %d %q, want 404 saying to netboot again", keepEnvs, code, body)
	}
	for _, bad := range []DeployEnv{{ID: "../x", Kernel: v2.env.Kernel, Initramfs: v2.env.Initramfs}, {ID: "V5", Kernel: v2.env.Kernel, Initramfs: v2.env.Initramfs},
		{ID: "v5", Kernel: filepath.Join(t.TempDir(), "none"), Initramfs: v2.env.Initramfs}} {
		if err := s.SetEnv(bad); err == nil {
			t.Errorf("SetEnv(%+v) = nil, want refused", bad)
		}
	}
	if _, body := httpGet(t, cfg, plan); !strings.Contains(body, "/files/v4/vmlinuz ") {
		t.Errorf("script after refused SetEnvs:\n%s\nwant v4's files still", body)
	}
}

type testEnv struct {
	env    DeployEnv
	kernel []byte
}

func newEnv(t *testing.T, id string) testEnv {
	t.Helper()
	dir := t.TempDir()
	e := testEnv{env: DeployEnv{ID: id, Kernel: filepath.Join(dir, "vmlinuz"), Initramfs: filepath.Join(dir, "initrd")}, kernel: make([]byte, 100_003)}
	rand.Read(e.kernel)
	if err := os.WriteFile(e.env.Kernel, e.kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.env.Initramfs, []byte(fmt.Sprint("initramfs of ", id)), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}
