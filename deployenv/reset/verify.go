package reset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// hashOthers hashes every partition but the Windows one, read-only.
func hashOthers(ctx context.Context, d *disk, parts []Partition) ([]Partition, error) {
	var out []Partition
	for _, p := range parts {
		if p.Role == "windows" {
			continue
		}
		dev, err := d.device(p, false)
		if err != nil {
			return nil, err
		}
		if p.SHA256, err = deviceSHA256(ctx, dev, p.Size); err != nil {
			return nil, fmt.Errorf("hash partition %d: %w", p.Number, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// deviceSHA256 hashes the first size bytes of a device.
func deviceSHA256(ctx context.Context, dev string, size int64) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for done := int64(0); done < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-done)])
		h.Write(buf[:n])
		done += int64(n)
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verify checks the new volume, mounted read-only: every kept file as it
// was, the old profiles gone; and every other partition byte-identical.
// It returns the profiles removed.
func verify(ctx context.Context, d *disk, rec *record, scratch string) ([]string, error) {
	dev, err := d.device(rec.Layout.Windows, true)
	if err != nil {
		return nil, err
	}
	m, err := mountNTFS(ctx, dev, scratch, false)
	if err != nil {
		return nil, fmt.Errorf("mount the new volume read-only: %w", err)
	}
	removed, verr := checkVolume(m.dir, rec)
	if err := m.unmount(); verr == nil {
		verr = err
	}
	if verr != nil {
		return nil, verr
	}
	after, err := hashOthers(ctx, d, rec.Layout.Partitions)
	if err != nil {
		return nil, err
	}
	for i, p := range after {
		if want := rec.Layout.Untouched[i]; p.SHA256 != want.SHA256 {
			return nil, fmt.Errorf("%w: partition %d (%s) changed: sha256 %s, was %s", ErrVerify, p.Number, p.Role, p.SHA256, want.SHA256)
		}
	}
	return removed, nil
}

// checkVolume checks the kept files (setting their After) and profiles
// under a mounted volume.
func checkVolume(root string, rec *record) ([]string, error) {
	for i, k := range rec.Kept {
		sum, size, err := fileSHA256(filepath.Join(root, k.Path))
		if err != nil {
			return nil, fmt.Errorf("%w: kept %s: %w", ErrVerify, k.Path, err)
		}
		if sum != k.Before || size != k.Size {
			return nil, fmt.Errorf("%w: kept %s: sha256 %s (%d bytes), was %s (%d bytes)", ErrVerify, k.Path, sum, size, k.Before, k.Size)
		}
		rec.Kept[i].After = sum
	}
	var removed []string
	for _, p := range rec.Layout.Profiles {
		// A profile of the same name may come with the image or an admin's
		// keep path; only an absent one is reported removed.
		if _, err := os.Lstat(filepath.Join(root, p)); os.IsNotExist(err) {
			removed = append(removed, p)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, keepRoot)); !os.IsNotExist(err) {
		return nil, fmt.Errorf("%w: %s left on the volume", ErrVerify, keepRoot)
	}
	return removed, nil
}
