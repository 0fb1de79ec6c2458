package controller

import (
	"context"
	"fmt"

	imagefarmv1 "github.com/imagefarm/imagefarm/proto/imagefarm/v1"
	"github.com/imagefarm/imagefarm/storage/gpt"
)

// checkPartitions refuses a partition-aware job that no drive could run:
// partition numbers out of range or named twice, --partition with --keep
// or with the capacity check, an image with no valid GUID partition table,
// a partition the image does not have. The drive's own table is the
// imager's to check, before it writes anything.
func (v *storeView) checkPartitions(ctx context.Context, digest string, o *imagefarmv1.JobOptions) error {
	sel := gpt.Select(o.GetPartitions(), o.GetKeepPartitions())
	if sel.Whole() {
		return nil
	}
	if err := sel.Check(); err != nil {
		return err
	}
	if o.GetCheckCapacity() {
		return gpt.ErrWithCapacityCheck
	}
	m, err := v.cat.ManifestByDigest(ctx, digest)
	if err != nil {
		return err
	}
	image, err := gpt.Read(v.cat.ReaderAt(ctx, m), m.Size)
	if err == nil {
		_, err = sel.Ranges(image, m.Size)
	}
	if err != nil {
		return fmt.Errorf("%s of image %s: %w", sel, m.Name, err)
	}
	return nil
}
