package imager_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/dirlock"
	"github.com/imagefarm/imagefarm/internal/sample"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// TestNodeCacheRemovedUnderRunningImager wipes the node cache folder of a
// running agent between two tasks (an operator freeing disk space): the
// next task is DONE, the cache and the accepted-images record are made
// again (the record from memory, so an older image is still refused as a
// rollback), the folder is the agent's again, and the agent says so in
// its log.
func TestNodeCacheRemovedUnderRunningImager(t *testing.T) {
	b := newBench(t, 8*chunkSize) // img:1
	var img bytes.Buffer
	sample.WriteDiskImage(&img, 8*chunkSize, 12)
	newer, err := b.cat.Push(t.Context(), bytes.NewReader(img.Bytes()), int64(img.Len()),
		catalog.PushOptions{Name: "img", Version: "2", Kind: catalog.KindDisk, ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := b.cache.Dir()
	dir := t.TempDir()
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("d%d.img", i)), bytes.Repeat([]byte{0xEE}, 10*chunkSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dcfg := drive.Config{VirtualDir: dir, CacheDir: cacheDir}
	drives, err := drive.Discover(dcfg)
	drives = slices.DeleteFunc(drives, drive.Drive.IsBlock)
	if err != nil || len(drives) != 3 {
		t.Fatalf("Discover() = %d drives, %v; want 3", len(drives), err)
	}
	f := startRig(t, b, dcfg, drives, nil)
	task := func(id string, i int, digest, ref string) *imagefarmv1.TaskResult {
		t.Helper()
		a := f.assignment(id, i, 3)
		a.ManifestDigest, a.ImageRef = digest, ref
		f.publish(t, a)
		return f.ctl.result(t, id)
	}
	accepted := filepath.Join(cacheDir, catalog.CacheStateDir, imager.AcceptedFile)

	if r := task("t1", 0, newer.Digest, "img:2"); r.GetState() != stateDone {
		t.Fatalf("first task = %v, want DONE", r)
	}
	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	r := task("t2", 1, newer.Digest, "img:2")
	if r.GetState() != stateDone {
		t.Fatalf("task after the node cache was removed = %v %v, want DONE", r.GetState(), r.GetFailure())
	}
	if data, err := os.ReadFile(accepted); err != nil || !strings.Contains(string(data), newer.Digest) {
		t.Errorf("%s after the wipe = %q, %v; want it written again with img:2", accepted, data, err)
	}
	r = task("t3", 2, b.digest, "img:1")
	if f := r.GetFailure(); f.GetReason() != imagefarmv1.FailureReason_FAILURE_REASON_ROLLBACK {
		t.Errorf("img:1 after img:2 and the wipe = %v %v, want FAILED ROLLBACK", r.GetState(), f)
	}
	if !f.untouched(t, 2) {
		t.Error("the rollback's drive was written")
	}
	if st := b.cache.Stats(); st.Chunks == 0 {
		t.Errorf("cache after the wipe holds %d chunks, want img:2's fetched again", st.Chunks)
	}
	if _, err := catalog.OpenCache(cacheDir, 1<<30); !errors.Is(err, dirlock.ErrBusy) {
		t.Errorf("OpenCache(the recreated folder) by another owner = %v, want it refused as in use", err)
	}
	for _, want := range []string{"NODE CACHE REMOVED", "ACCEPTED-IMAGES RECORD REMOVED"} {
		if !strings.Contains(f.logs.String(), want) {
			t.Errorf("agent log does not say %q", want)
		}
	}
}
