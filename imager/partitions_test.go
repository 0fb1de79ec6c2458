package imager_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/imager"
	"github.com/imagefarm/imagefarm/imager/drive"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/storage/gpt"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// windowsBench pushes a Windows disk image made by NewWindowsDisk.
func windowsBench(t *testing.T, opts testenv.WindowsDiskOptions) (*bench, *testenv.WindowsDisk) {
	t.Helper()
	d := testenv.NewWindowsDisk(t, opts)
	data, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := catalog.New(store, catalog.Options{})
	res, err := plain.Push(t.Context(), bytes.NewReader(data), int64(len(data)), catalog.PushOptions{Name: "windows", Version: "1", Kind: catalog.KindDisk, ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := catalog.OpenCache(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := catalog.New(store, catalog.Options{Cache: cache})
	return &bench{cat: cat, cache: cache, m: res.Manifest, digest: res.Digest, image: data}, d
}

// windowsDrive is another Windows disk (its volumes made apart from the
// image's, so every one differs) as a loop device opened as imagefarm
// write opens drives.
func windowsDrive(t *testing.T, opts testenv.WindowsDiskOptions) (imager.Target, *testenv.WindowsDisk) {
	t.Helper()
	opts.Files = map[string]string{"Users/bob/Documents/old.txt": "the drive's old volume\n"}
	d := testenv.NewWindowsDisk(t, opts)
	l := testenv.AttachLoop(t, d.Path)
	drives, err := drive.Discover(drive.Config{})
	if err != nil {
		t.Fatal(err)
	}
	found, err := drive.Find(drives, l.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, direct, err := drive.OpenExclusive(found)
	if err != nil {
		t.Fatal(err)
	}
	dev := imager.NewFileDevice(f, direct)
	t.Cleanup(func() { dev.Close() })
	return imager.Target{ID: found.ID, Path: l.Path, Dev: dev}, d
}

// hashes is each partition's SHA-256 on a disk, by number.
func hashes(t *testing.T, d *testenv.WindowsDisk) map[int]string {
	t.Helper()
	h := map[int]string{}
	for n := range d.Partitions {
		h[n] = d.PartitionSHA256(t, n)
	}
	return h
}

// TestPartitionWrites writes one Windows disk image by partition to other
// Windows disks on loop devices (one image for all subtests: making and
// pushing it is most of the time).
func TestPartitionWrites(t *testing.T) {
	testenv.RequireRoot(t)
	b, image := windowsBench(t, testenv.WindowsDiskOptions{WindowsSize: 48 << 20})
	t.Run("restore 3", func(t *testing.T) { testWritePartitionOnly(t, b, image) })
	t.Run("keep 4", func(t *testing.T) { testWriteKeepingRecovery(t, b, image) })
	t.Run("kept changed", func(t *testing.T) { testKeptChanged(t, b) })
	t.Run("refusals", func(t *testing.T) { testPartitionWriteRefusals(t, b) })
}

// testWritePartitionOnly restores the Windows partition alone: it reads
// back as the image's, every other partition and both partition tables
// are byte-identical to before, and the result proves it with hashes.
func testWritePartitionOnly(t *testing.T, b *bench, image *testenv.WindowsDisk) {
	tg, d := windowsDrive(t, testenv.WindowsDiskOptions{WindowsSize: 48 << 20})
	before := hashes(t, d)
	p1 := d.Partitions[testenv.EFIPartition]
	gptBefore := testenv.RangeSHA256(t, d.Path, 0, p1.Start)
	r := b.write(t, t.Context(), []imager.Target{tg}, imager.WriteOptions{Partitions: gpt.Selection{Restore: []int{testenv.WindowsPartition}}})[0]
	if r.Phase != imager.PhaseVerified {
		t.Fatalf("write --partition 3: %s %v, want verified", r.Phase, r.Err)
	}
	win := d.Partitions[testenv.WindowsPartition]
	if r.BytesWritten != win.Size {
		t.Errorf("write --partition 3 wrote %d bytes, want the partition's %d", r.BytesWritten, win.Size)
	}
	after := hashes(t, d)
	if want := image.PartitionSHA256(t, testenv.WindowsPartition); after[testenv.WindowsPartition] != want {
		t.Errorf("partition 3 holds %s, the image's is %s", after[testenv.WindowsPartition], want)
	}
	for _, n := range []int{testenv.EFIPartition, testenv.MSRPartition, testenv.RecoveryPartition} {
		if after[n] != before[n] {
			t.Errorf("partition %d changed: %s, was %s", n, after[n], before[n])
		}
	}
	if got := testenv.RangeSHA256(t, d.Path, 0, p1.Start); got != gptBefore {
		t.Errorf("the primary partition table changed")
	}
	if len(r.Kept) != 5 {
		t.Errorf("Result.Kept = %+v, want partitions 1, 2, 4 and both tables", r.Kept)
	}
	for _, k := range r.Kept {
		if k.SHA256Before == "" || k.SHA256Before != k.SHA256After {
			t.Errorf("kept %s: SHA-256 %q before, %q after", k.Name, k.SHA256Before, k.SHA256After)
		}
	}
	files := testenv.NTFSFiles(t, d.AttachPartition(t, testenv.WindowsPartition).Path)
	if _, ok := files["Users/bob/Documents/old.txt"]; ok || files[testenv.AliceDocument] != image.Files[testenv.AliceDocument] {
		t.Errorf("restored Windows volume holds %d files, want the image's", len(files))
	}
}

// testWriteKeepingRecovery keeps the recovery partition and writes the
// rest, zero chunks zeroed (--discard): the recovery partition is
// byte-identical to before, everything else is the image's.
func testWriteKeepingRecovery(t *testing.T, b *bench, image *testenv.WindowsDisk) {
	tg, d := windowsDrive(t, testenv.WindowsDiskOptions{WindowsSize: 48 << 20, NoWinRE: true})
	rec := d.Partitions[testenv.RecoveryPartition]
	before := d.PartitionSHA256(t, testenv.RecoveryPartition)
	r := b.write(t, t.Context(), []imager.Target{tg}, imager.WriteOptions{Discard: true, Partitions: gpt.Selection{Keep: []int{testenv.RecoveryPartition}}})[0]
	if r.Phase != imager.PhaseVerified || r.Zeros != "zeroed" {
		t.Fatalf("write --keep 4 --discard: %s, zeros %s, %v; want verified, zeroed", r.Phase, r.Zeros, r.Err)
	}
	if got := d.PartitionSHA256(t, testenv.RecoveryPartition); got != before {
		t.Errorf("kept partition 4 changed: %s, was %s", got, before)
	}
	if got, want := testenv.RangeSHA256(t, d.Path, 0, rec.Start), testenv.RangeSHA256(t, image.Path, 0, rec.Start); got != want {
		t.Errorf("the drive up to partition 4 is not the image's")
	}
	end := rec.Start + rec.Size
	if got, want := testenv.RangeSHA256(t, d.Path, end, image.Size-end), testenv.RangeSHA256(t, image.Path, end, image.Size-end); got != want {
		t.Errorf("the backup partition table is not the image's")
	}
	if len(r.Kept) != 1 || !strings.HasPrefix(r.Kept[0].Name, "partition 4 (Windows recovery)") || r.Kept[0].SHA256After != r.Kept[0].SHA256Before {
		t.Errorf("Result.Kept = %+v, want partition 4 with equal hashes", r.Kept)
	}
}

// testPartitionWriteRefusals checks that a drive laid out otherwise, a
// drive with no partition table, a partition the image does not have and
// the capacity check are each refused by name, with the drive untouched.
func testPartitionWriteRefusals(t *testing.T, b *bench) {
	other, otherDisk := windowsDrive(t, testenv.WindowsDiskOptions{WindowsSize: 64 << 20})
	blank, blankLoop := loopTarget(t, 4<<20)
	keep4 := gpt.Selection{Keep: []int{4}}
	tests := []struct {
		name   string
		target imager.Target
		disk   string
		opts   imager.WriteOptions
		want   string
	}{
		{"layout differs", other, otherDisk.Path, imager.WriteOptions{Partitions: keep4},
			"partition 4: image starts at sector 215040, drive at 247808"},
		{"no partition table", blank, blankLoop.Backing, imager.WriteOptions{Partitions: keep4}, "no partition table"},
		{"no such partition", other, otherDisk.Path, imager.WriteOptions{Partitions: gpt.Selection{Restore: []int{7}}},
			"the image has no partition 7 (it has 1 EFI system, 2 Microsoft reserved, 3 Microsoft basic data, 4 Windows recovery)"},
		{"capacity check", other, otherDisk.Path, imager.WriteOptions{Partitions: keep4, CheckCapacity: true}, "cannot be asked with --partition or --keep"},
	}
	before := map[string]string{} // each disk's bytes, hashed once: refusals leave them as they are
	for _, tt := range tests {
		if before[tt.disk] == "" {
			before[tt.disk] = testenv.SHA256(t, tt.disk, -1)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.write(t, t.Context(), []imager.Target{tt.target}, imager.WriteOptions(tt.opts))[0]
			if r.Phase != imager.PhaseFailed || !imager.IsLayoutError(r.Err) || !strings.Contains(r.Error, tt.want) || r.BytesWritten != 0 {
				t.Errorf("write = %s, %d bytes, %v; want failed, nothing written, with %q", r.Phase, r.BytesWritten, r.Err, tt.want)
			}
			if after := testenv.SHA256(t, tt.disk, -1); after != before[tt.disk] {
				t.Errorf("the refused drive changed")
			}
		})
	}
}

// scribbler writes one byte into a range the write keeps as the drive is
// flushed, as a buggy write or another writer would.
type scribbler struct {
	imager.Device
	at int64
}

func (s scribbler) Sync() error {
	buf := catalog.AlignedBytes(4096)
	if _, err := s.Device.ReadAt(buf, s.at); err != nil {
		return err
	}
	buf[0] ^= 0xFF
	if _, err := s.Device.WriteAt(buf, s.at); err != nil {
		return err
	}
	return s.Device.Sync()
}

// testKeptChanged checks that a kept partition that changes while the
// drive is written fails the drive, naming the partition and both hashes.
func testKeptChanged(t *testing.T, b *bench) {
	tg, d := windowsDrive(t, testenv.WindowsDiskOptions{WindowsSize: 48 << 20})
	tg.Dev = scribbler{Device: tg.Dev, at: d.Partitions[testenv.EFIPartition].Start + 64<<10}
	r := b.write(t, t.Context(), []imager.Target{tg}, imager.WriteOptions{Partitions: gpt.Selection{Restore: []int{testenv.WindowsPartition}}})[0]
	var ke *imager.KeptChangedError
	if !errors.As(r.Err, &ke) || ke.Range.Name != "partition 1 (EFI system)" || r.VerifiedDigest != "" ||
		ke.Range.SHA256After == ke.Range.SHA256Before || !strings.Contains(r.Error, ke.Range.SHA256Before) {
		t.Errorf("write with partition 1 changed behind it: %s %v, want a KeptChangedError naming partition 1", r.Phase, r.Err)
	}
}
