package media

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/imagefarm/imagefarm/internal/userpath"
	"github.com/imagefarm/imagefarm/media/fatdisk"
	"github.com/imagefarm/imagefarm/storage/catalog"
)

// Errors Build returns before anything is downloaded or written.
var (
	ErrModelMismatch = errors.New("media: model mismatch")
	ErrWrongKind     = errors.New("media: wrong kind of image")
	ErrNotBootable   = errors.New("media: WinPE bundle cannot boot")
)

// Split sizes: parts must fit a FAT32 file.
const (
	DefaultSplitSize = 4000 << 20
	MaxSplitSize     = fatdisk.MaxFileSize &^ (1<<20 - 1) // whole MiB, as wimlib-imagex split takes it
)

// Spec says what goes on a key.
type Spec struct {
	WinPE    catalog.Ref   // a winpe bundle with EFI/Boot/bootx64.efi and sources/boot.wim
	WIM      catalog.Ref   // the Windows image to deploy
	WIMIndex int           // the one image of the WIM to keep; 0 keeps all
	Drivers  []catalog.Ref // driver bundles
	PPKGs    []catalog.Ref // provisioning packages
	Updates  []catalog.Ref // update packages (.msu, .cab), added with DISM in this order after the WIM is applied
	Hooks    []catalog.Ref // hook folders, their scripts run at their points in this order
	// Recovery, when set, is a manufacturer's recovery drive that makes the
	// whole key, instead of WinPE, a WIM and the rest.
	Recovery  catalog.Ref
	Model     string       // the exact device model the key is for; empty takes only universal inputs
	SplitSize int64        // a WIM larger than this is split; DefaultSplitSize when 0
	Out       string       // the image file to write: a new path, or an existing regular file with Replace (userpath.Create)
	Replace   bool         // replace Out if it is an existing regular file
	WorkDir   string       // where the folder that inputs are unpacked in is made; the system's temporary folder when empty
	Log       *slog.Logger // steps, at info; nil logs nothing
}

// Input is one catalog item that went into a key.
type Input struct {
	Role     string // winpe, wim, drivers, ppkg, updates, hook or recovery
	Ref      catalog.Ref
	Digest   string
	Manifest *catalog.Manifest
}

// Result is what Build made.
type Result struct {
	Digest   string // "sha256:<hex>" of the image's bytes
	Size     int64
	Inputs   []Input
	WIMIndex int // as in Spec
	WIMParts int // 1, or the number of .swm parts
	Model    string
	Fetch    time.Duration // downloading, unpacking, exporting and splitting
	Write    time.Duration // writing the image
}

// repeated are the roles a key may have several inputs of; their labels
// are numbered.
var repeated = map[string]bool{"drivers": true, "ppkg": true, "updates": true, "hook": true}

// Labels say what went into the image, for its manifest: every input's
// ref and digest, the model and the imagefarm version that built it.
func (r *Result) Labels(version string) map[string]string {
	l := map[string]string{"imagefarm.version": version}
	if r.WIMParts > 0 { // not a recovery key
		l["media.wim-index"] = "all"
	}
	if r.WIMIndex > 0 {
		l["media.wim-index"] = strconv.Itoa(r.WIMIndex)
	}
	if r.Model != "" {
		l["media.model"] = r.Model
	}
	n := map[string]int{}
	for _, in := range r.Inputs {
		key := "media." + in.Role
		if repeated[in.Role] {
			n[in.Role]++
			key += "." + strconv.Itoa(n[in.Role])
		}
		l[key] = in.Ref.String() + "@" + in.Digest
	}
	return l
}

// Build checks spec's inputs against their kinds and the model, then
// downloads them and writes the key's image to spec.Out, which appears
// only once complete.
func Build(ctx context.Context, c *catalog.Catalog, spec Spec) (*Result, error) {
	if spec.Out == "" {
		return nil, errors.New("media: no file to write the image to")
	}
	// Refused before minutes of downloading; checked again as it is written.
	if err := userpath.CheckOutput(spec.Out, spec.Replace); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	if spec.SplitSize == 0 {
		spec.SplitSize = DefaultSplitSize
	}
	if spec.SplitSize < 1<<20 || spec.SplitSize > MaxSplitSize {
		return nil, fmt.Errorf("media: split size %d: want 1 MiB to %d MiB, so each part fits a FAT32 file", spec.SplitSize, MaxSplitSize>>20)
	}
	if spec.Log == nil {
		spec.Log = slog.New(slog.DiscardHandler)
	}
	inputs, err := resolve(ctx, c, spec)
	if err != nil {
		return nil, err
	}
	work, removeWork, err := userpath.TempFolder(spec.WorkDir, "imagefarm-media-")
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	defer removeWork()
	res := &Result{Inputs: inputs, WIMIndex: spec.WIMIndex, Model: spec.Model}
	start := time.Now()
	b := &builder{c: c, spec: spec, inputs: inputs, work: work, log: spec.Log}
	if err := b.fetch(ctx); err != nil {
		return nil, err
	}
	res.WIMParts, res.Fetch = b.wimParts, time.Since(start)
	start = time.Now()
	if res.Size, res.Digest, err = writeImage(ctx, spec.Out, spec.Replace, b.files, imageOptions(inputs, spec)); err != nil {
		return nil, err
	}
	res.Write = time.Since(start)
	spec.Log.Info("media image written", "path", spec.Out, "size", res.Size, "digest", res.Digest)
	return res, nil
}

// imageOptions fixes what fatdisk would otherwise leave open from the
// inputs alone: time stamps are the newest input's creation time, the
// serial numbers come from a hash of everything that shapes the image.
func imageOptions(inputs []Input, spec Spec) fatdisk.Options {
	h := sha256.New()
	fmt.Fprintf(h, "imagefarm media\x00%s\x00%d\x00%d\n", spec.Model, spec.WIMIndex, spec.SplitSize)
	var newest time.Time
	for _, in := range inputs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", in.Role, in.Ref.Name, in.Digest)
		if in.Manifest.Created.After(newest) {
			newest = in.Manifest.Created
		}
	}
	sum := h.Sum(nil)
	return fatdisk.Options{
		Label:    "IMAGEFARM",
		VolumeID: binary.LittleEndian.Uint32(sum[0:]),
		DiskID:   binary.LittleEndian.Uint32(sum[4:]),
		Time:     newest,
	}
}

// writeImage writes the image to path (userpath.Create: it appears there
// only once complete), hashing it as it goes, until ctx is done. It is not
// synced: the same inputs make it again, byte for byte.
func writeImage(ctx context.Context, path string, replace bool, files []fatdisk.File, opts fatdisk.Options) (int64, string, error) {
	out, err := userpath.Create(path, userpath.Options{Force: replace, NoSync: true})
	if err != nil {
		return 0, "", fmt.Errorf("media: %w", err)
	}
	defer out.Abort()
	h := sha256.New()
	size, err := fatdisk.Write(&hashingWriter{ctx: ctx, w: out, h: h}, files, opts)
	if err == nil {
		err = out.Commit()
	}
	if err != nil {
		return 0, "", fmt.Errorf("media: write %s: %w", path, err)
	}
	return size, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// hashingWriter writes each buffer to w while it hashes it, so that the
// write to the file and SHA-256 (each about a second per GiB here)
// overlap. It fails once ctx is done, so that an interrupted build stops.
type hashingWriter struct {
	ctx context.Context
	w   io.Writer
	h   hash.Hash
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	if err := hw.ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err = hw.w.Write(p)
	}()
	hw.h.Write(p)
	<-done
	return n, err
}
