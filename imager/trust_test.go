package imager_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/sample"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// TestUntrustedImagesLeaveDrivesUntouched runs tasks through RunTasks from
// a real file store with a trusted key and a rollback record: an unsigned
// image, a bad signature (bytes flipped, an untrusted key, a signature
// moved from another image, a signed image assigned under another name),
// a rollback, an image that is not a disk image and a tampered chunk each
// fail with their named reason, and the drive keeps every byte it had.
func TestUntrustedImagesLeaveDrivesUntouched(t *testing.T) {
	ctx := t.Context()
	storeDir := t.TempDir()
	s, err := storage.NewFileStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	cache, err := catalog.OpenCache(cacheDir, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(s, catalog.Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	farm, stranger := mustKey(t), mustKey(t)
	ring := catalog.NewKeyRing(farm.Public("farm"))
	pushKind := func(ref string, kind catalog.Kind, seed uint64, key *catalog.SigningKey) *catalog.PushResult {
		t.Helper()
		name, version, _ := strings.Cut(ref, ":")
		var img bytes.Buffer
		sample.WriteImage(&img, 8*chunkSize, seed, sample.Shape{Random: 100})
		res, err := cat.Push(ctx, bytes.NewReader(img.Bytes()), int64(img.Len()), catalog.PushOptions{
			Name: name, Version: version, Kind: kind, ChunkSize: chunkSize, SignKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	push := func(ref string, seed uint64, key *catalog.SigningKey) *catalog.PushResult {
		t.Helper()
		return pushKind(ref, catalog.KindDisk, seed, key)
	}
	old, current := push("win:1", 1, farm), push("win:2", 1, farm)
	unsigned := push("win:3", 1, nil)
	untrusted := push("win:4", 1, stranger)
	flipped := push("win:5", 1, farm)
	editSignature(t, storeDir, flipped.Digest, farm.ID, func(sig *catalog.Signature) { sig.Sig[3] ^= 0x40 })
	moved := push("evil:1", 1, nil)
	copyFile(t, signaturePath(storeDir, current.Digest, farm.ID), signaturePath(storeDir, moved.Digest, farm.ID))
	otherName := push("lab-tools:1", 1, farm)
	winpe := pushKind("pe:1", catalog.KindWinPE, 1, farm) // a job stored before submits checked the kind
	// The last chunk: the chunks before it are sound, and none of them may
	// reach the drive either.
	tampered := push("tamper:1", 2, farm)
	last := tampered.Manifest.Chunks[len(tampered.Manifest.Chunks)-1]
	chunkFile := filepath.Join(storeDir, "chunks", last.ID[:2], last.ID)
	data, err := os.ReadFile(chunkFile)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	os.WriteFile(chunkFile, data, 0o644)

	acc, err := imager.OpenAccepted(filepath.Join(cacheDir, catalog.CacheStateDir, imager.AcceptedFile))
	if err != nil {
		t.Fatal(err)
	}
	run := func(res *catalog.PushResult, imageRef string) (*imagefarmv1.TaskResult, bool) {
		t.Helper()
		dir := t.TempDir()
		size := int64(12 * chunkSize)
		before := bytes.Repeat([]byte{0xEE}, int(size))
		path := filepath.Join(dir, "d.img")
		if err := os.WriteFile(path, before, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := drive.Config{VirtualDir: dir, CacheDir: cacheDir}
		task := &imagefarmv1.TaskAssignment{TaskId: "t-1", Epoch: 1, ManifestDigest: res.Digest, ImageRef: imageRef,
			Drive: &imagefarmv1.DriveIdentity{Id: "virt-d.img", Serial: virtualSerial(t, cfg, "virt-d.img"),
				SizeBytes: uint64(size), Model: "virtual drive"}}
		w := imager.NewWriter(imager.WriterConfig{Catalog: cat, Trust: imager.Trust{Keys: ring, Accepted: acc}, Log: slog.New(slog.DiscardHandler)})
		r := w.RunTasks(ctx, res.Digest, []*imagefarmv1.TaskAssignment{task}, cfg, nil, nil)[0]
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return r, bytes.Equal(before, after)
	}
	if r, _ := run(current, "win:2"); r.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("signed win:2 = %v %v, want DONE", r.GetState(), r.GetFailure())
	}
	for _, tc := range []struct {
		name     string
		res      *catalog.PushResult
		ref      string
		want     imagefarmv1.FailureReason
		mentions []string
	}{
		{"unsigned", unsigned, "win:3", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_MISSING, []string{"win:3", farm.ID}},
		{"untrusted key", untrusted, "win:4", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, []string{"win:4", stranger.ID, farm.ID}},
		{"signature bytes flipped", flipped, "win:5", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, []string{"win:5", farm.ID, "does not verify"}},
		{"signature of another image", moved, "evil:1", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, []string{"evil:1", "win:2"}},
		{"signed image under another name", otherName, "win:stable", imagefarmv1.FailureReason_FAILURE_REASON_SIGNATURE_INVALID, []string{"win:stable", "lab-tools:1"}},
		{"rollback", old, "win:stable", imagefarmv1.FailureReason_FAILURE_REASON_ROLLBACK, []string{"win:1", "win:2"}},
		{"not a disk image", winpe, "pe:1", imagefarmv1.FailureReason_FAILURE_REASON_INTERNAL, []string{"pe:1 is a winpe, not a disk image"}},
		{"tampered chunk", tampered, "tamper:1", imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT, []string{last.ID[:16], fmt.Sprint(last.Offset)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, untouched := run(tc.res, tc.ref)
			f := r.GetFailure()
			t.Logf("%v: %s", f.GetReason(), f.GetMessage())
			if r.GetState() != imagefarmv1.TaskState_TASK_STATE_FAILED || f.GetReason() != tc.want || r.GetVerifiedDigest() != "" {
				t.Errorf("RunTasks(%s) = %v %v, want FAILED with %v", tc.ref, r.GetState(), f.GetReason(), tc.want)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(f.GetMessage(), m) {
					t.Errorf("failure message %q does not name %q", f.GetMessage(), m)
				}
			}
			if !untouched || r.GetBytesWritten() != 0 {
				t.Errorf("drive changed (%d bytes written reported), want it untouched", r.GetBytesWritten())
			}
		})
	}
}

func TestAcceptedSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", imager.AcceptedFile)
	acc, err := imager.OpenAccepted(path)
	if err != nil {
		t.Fatal(err)
	}
	m2 := &catalog.Manifest{Name: "win", Version: "2"}
	m2.Created = m2.Created.AddDate(2026, 0, 0)
	m1 := &catalog.Manifest{Name: "win", Version: "1", Created: m2.Created.Add(-1)}
	if err := acc.Admit(m2, "sha256:b"); err != nil {
		t.Fatal(err)
	}
	reopened, err := imager.OpenAccepted(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := reopened.Admit(m1, "sha256:a"); err == nil {
		t.Errorf("Admit(older) after reopen = nil, want a rollback error")
	}
	if err := reopened.Admit(m2, "sha256:b"); err != nil {
		t.Errorf("Admit(same again) = %v, want nil", err)
	}
}

func mustKey(t *testing.T) *catalog.SigningKey {
	t.Helper()
	k, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signaturePath(storeDir, digest, keyID string) string {
	return filepath.Join(storeDir, "signatures", "sha256", strings.TrimPrefix(digest, "sha256:"), keyID)
}

func editSignature(t *testing.T, storeDir, digest, keyID string, edit func(*catalog.Signature)) {
	t.Helper()
	p := signaturePath(storeDir, digest, keyID)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var sig catalog.Signature
	if err := json.Unmarshal(data, &sig); err != nil {
		t.Fatal(err)
	}
	edit(&sig)
	data, _ = json.Marshal(sig)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(to), 0o755)
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
