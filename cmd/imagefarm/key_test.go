package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyInitPushSignWrite makes a signing key, pushes one image signed and
// one unsigned, and checks that a write trusting the key takes the signed
// one, refuses the unsigned one until image sign signs it, and refuses an
// image signed by another key.
func TestKeyInitPushSignWrite(t *testing.T) {
	keys, other := t.TempDir(), t.TempDir()
	out := mustRun(t, "key", "init", "--out", keys, "--name", "depot")
	if !strings.Contains(out, "signing key ") {
		t.Errorf("key init printed %q", out)
	}
	fi, err := os.Stat(filepath.Join(keys, "signing.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing.key: %v, mode %v, want 0600", err, fi.Mode())
	}
	pub, _ := os.ReadFile(filepath.Join(keys, "signing.pub"))
	if !strings.HasPrefix(string(pub), "imagefarm-ed25519 ") || !strings.HasSuffix(string(pub), " depot\n") {
		t.Errorf("signing.pub = %q, want imagefarm-ed25519 <base64> depot", pub)
	}
	if _, err := run(t, "key", "init", "--out", keys); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("key init over an existing key = %v, want it refused", err)
	}
	mustRun(t, "key", "init", "--out", other)

	store := "file://" + t.TempDir()
	img := writeDiskImage(t, 2<<20, 1)
	mustRun(t, "--store", store, "image", "push", "disk:1", img, "--sign-key", filepath.Join(keys, "signing.key"))
	if out := mustRun(t, "--store", store, "image", "push", "disk:2", img); !strings.Contains(out, "disk:2 is not signed") {
		t.Errorf("unsigned push printed no warning:\n%s", out)
	}
	mustRun(t, "--store", store, "image", "push", "disk:3", img, "--sign-key", filepath.Join(other, "signing.key"))

	drives := t.TempDir()
	os.WriteFile(filepath.Join(drives, "key.img"), make([]byte, 4<<20), 0o644)
	write := func(ref string) error {
		_, err := run(t, "--store", store, "write", ref, "--virtual-drives", drives, "--drive", "virt-key.img", "--dry-run",
			"--cache", t.TempDir(), "--trusted-keys", filepath.Join(keys, "signing.pub"))
		return err
	}
	if err := write("disk:1"); err != nil {
		t.Errorf("write signed disk:1 = %v", err)
	}
	if err := write("disk:2"); err == nil || !strings.Contains(err.Error(), "has no signature") {
		t.Errorf("write unsigned disk:2 = %v, want no signature", err)
	}
	if err := write("disk:3"); err == nil || !strings.Contains(err.Error(), "none of them trusted") {
		t.Errorf("write disk:3 signed by another key = %v, want untrusted", err)
	}
	out = mustRun(t, "--store", store, "image", "sign", "disk:2", "--sign-key", filepath.Join(keys, "signing.key"))
	if !strings.Contains(out, "signed disk:2 sha256:") {
		t.Errorf("image sign printed %q", out)
	}
	if err := write("disk:2"); err != nil {
		t.Errorf("write disk:2 after image sign = %v", err)
	}
	if _, err := run(t, "--store", store, "image", "sign", "disk:2"); err == nil || !strings.Contains(err.Error(), "--sign-key") {
		t.Errorf("image sign without a key = %v, want one asked for", err)
	}
}

// TestImagerNeedsTrustedKeys checks that an imager refuses to start with
// neither trusted keys nor --allow-unsigned.
func TestImagerNeedsTrustedKeys(t *testing.T) {
	t.Setenv("IMAGEFARM_TRUSTED_KEYS", "")
	_, err := run(t, "imager", "--node-id", "n1", "--controller", "127.0.0.1:1", "--store", "file://"+t.TempDir(), "--insecure",
		"--virtual-drives", t.TempDir(), "--cache", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--trusted-keys") || !strings.Contains(err.Error(), "--allow-unsigned") {
		t.Errorf("imager without keys = %v, want it refused naming --trusted-keys and --allow-unsigned", err)
	}
}
