package imager_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/internal/sample"
	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestStorageFaultsFailTasksWithANamedReason writes an image from a real
// MinIO, through a fault proxy, to a virtual drive: storage gone for
// longer than the retry budget fails the task as STORAGE_UNAVAILABLE, a
// corrupt chunk object as CHUNK_CORRUPT, each naming the chunk and with no
// verified digest; an outage within the budget is ridden out.
func TestStorageFaultsFailTasksWithANamedReason(t *testing.T) {
	srv, err := testenv.StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url := srv.NewBucket(t)
	direct, err := storage.Open(url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pusher, _ := catalog.New(direct, catalog.Options{})
	var img bytes.Buffer
	sample.WriteImage(&img, 32*chunkSize, 4, sample.Shape{Random: 70, Zeros: 10}) // no zero chunk among the 32
	res, err := pusher.Push(t.Context(), bytes.NewReader(img.Bytes()), int64(img.Len()),
		catalog.PushOptions{Name: "img", Version: "1", Kind: catalog.KindDisk, ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	victim := res.Manifest.Chunks[len(res.Manifest.Chunks)/2]
	if victim.Zero {
		t.Fatal("the image's middle chunk is a zero chunk, not stored")
	}
	key := "chunks/" + victim.ID[:2] + "/" + victim.ID
	good, err := direct.Open(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var goodObject bytes.Buffer
	goodObject.ReadFrom(good)
	good.Close()

	for _, tc := range []struct {
		name   string
		budget time.Duration
		fault  func(t *testing.T, p *testenv.FaultProxy) // called as the 12th chunk object is opened
		want   imagefarmv1.FailureReason
	}{
		{"storage gone", 2 * time.Second, func(t *testing.T, p *testenv.FaultProxy) { p.Refuse(true) },
			imagefarmv1.FailureReason_FAILURE_REASON_STORAGE_UNAVAILABLE},
		{"storage back within the budget", time.Minute, func(t *testing.T, p *testenv.FaultProxy) {
			p.Refuse(true)
			back := time.AfterFunc(3*time.Second, func() { p.Refuse(false) })
			t.Cleanup(func() { back.Stop() })
		}, imagefarmv1.FailureReason_FAILURE_REASON_UNSPECIFIED},
		{"corrupt chunk object", time.Minute, nil, imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testenv.StartFaultProxy(t, srv.Endpoint)
			s, err := storage.Open(proxy.StoreURL(url), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.fault == nil { // damage the chunk before anything could have read it
				bad := bytes.Clone(goodObject.Bytes())
				bad[len(bad)/3] ^= 0x10
				if err := direct.Put(t.Context(), key, bytes.NewReader(bad), int64(len(bad))); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { direct.Put(t.Context(), key, bytes.NewReader(goodObject.Bytes()), int64(goodObject.Len())) })
			} else {
				s = &triggerStore{Store: s, at: 12, fire: func() { tc.fault(t, proxy) }}
			}
			cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			cat, err := catalog.New(s, catalog.Options{Cache: cache, RetryBudget: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			size := int64(40 * chunkSize)
			if err := os.WriteFile(filepath.Join(dir, "d.img"), bytes.Repeat([]byte{0xEE}, int(size)), 0o644); err != nil {
				t.Fatal(err)
			}
			task := &imagefarmv1.TaskAssignment{TaskId: "t-1", Epoch: 1, ManifestDigest: res.Digest,
				Drive: &imagefarmv1.DriveIdentity{Id: "virt-d.img", Serial: virtualSerial(t, drive.Config{VirtualDir: dir}, "virt-d.img"),
					SizeBytes: uint64(size), Model: "virtual drive"}}
			start := time.Now()
			w := imager.NewWriter(imager.WriterConfig{Catalog: cat, Log: slog.New(slog.DiscardHandler)})
			r := w.RunTasks(t.Context(), res.Digest, []*imagefarmv1.TaskAssignment{task}, drive.Config{VirtualDir: dir}, nil, nil)[0]
			f := r.GetFailure()
			t.Logf("%s: %v after %v: %v %s", tc.name, r.GetState(), time.Since(start).Round(time.Millisecond), f.GetReason(), f.GetMessage())
			if tc.want == imagefarmv1.FailureReason_FAILURE_REASON_UNSPECIFIED {
				if r.GetState() != imagefarmv1.TaskState_TASK_STATE_DONE || r.GetVerifiedDigest() != res.Digest {
					t.Errorf("task = %v %v, want DONE and verified", r.GetState(), f)
				}
				return
			}
			if r.GetState() != imagefarmv1.TaskState_TASK_STATE_FAILED || f.GetReason() != tc.want || r.GetVerifiedDigest() != "" {
				t.Errorf("task = %v %v verified %q, want FAILED with %v and nothing verified", r.GetState(), f.GetReason(), r.GetVerifiedDigest(), tc.want)
			}
			if f.GetChunkId() == "" || f.Offset == nil {
				t.Errorf("failure %v names no chunk", f)
			}
			if tc.want == imagefarmv1.FailureReason_FAILURE_REASON_CHUNK_CORRUPT && (f.GetChunkId() != victim.ID || f.GetOffset() != uint64(victim.Offset)) {
				t.Errorf("failure names chunk %s at %d, want %s at %d", f.GetChunkId(), f.GetOffset(), victim.ID, victim.Offset)
			}
		})
	}
}

// triggerStore calls fire as the at-th chunk object is opened, before
// opening it: a fault that starts mid-image whatever the read-ahead.
type triggerStore struct {
	storage.Store
	opens atomic.Int64
	at    int64
	fire  func()
}

func (s *triggerStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "chunks/") && s.opens.Add(1) == s.at {
		s.fire()
	}
	return s.Store.Open(ctx, key, off, n)
}
