package wim_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// TestSetGUID makes split parts with wimlib, gives them one GUID, and
// checks with wimlib that they still verify as one WIM with that GUID.
func TestSetGUID(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	writeTree(t, src, 1, 700)
	whole := filepath.Join(dir, "install.wim")
	wimlib(t, "capture", src, whole, "Image", "--compress=none")
	wimlib(t, "split", whole, filepath.Join(dir, "install.swm"), "1")
	parts, _ := filepath.Glob(filepath.Join(dir, "install*.swm"))
	if len(parts) < 2 {
		t.Fatalf("wimlib split made %v, want parts", parts)
	}
	guid := [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 0x42}
	for _, p := range parts {
		if err := wim.SetGUID(p, guid); err != nil {
			t.Fatal(err)
		}
		if got := wimlibInfo(t, p).GUID; got != hex.EncodeToString(guid[:]) {
			t.Errorf("wimlib-imagex info %s: GUID %s, want %x", filepath.Base(p), got, guid)
		}
	}
	wimlib(t, "verify", parts[0], "--ref="+filepath.Join(dir, "install*.swm"))

	notWIM := filepath.Join(dir, "not.wim")
	os.WriteFile(notWIM, make([]byte, 300), 0o600)
	if err := wim.SetGUID(notWIM, guid); !errors.Is(err, wim.ErrNotWIM) {
		t.Errorf("SetGUID of zeros = %v, want ErrNotWIM", err)
	}
}
