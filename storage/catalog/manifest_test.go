package catalog_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

// TestForDrive: of every kind, only a disk image that is not empty goes on
// a drive; the refusal names the image and its kind and says what to do.
func TestForDrive(t *testing.T) {
	for _, tc := range []struct {
		kind catalog.Kind
		size int64
		want string // "" for a drive image
	}{
		{catalog.KindDisk, 1, ""},
		{catalog.KindDisk, 0, "image x:1 is empty (0 bytes): there is nothing to write to a drive"},
		{catalog.KindWIM, 1, "image x:1 is a wim, not a disk image: only disk images are written to drives; build a USB key's disk image from it with imagefarm media build --wim"},
		{catalog.KindWinPE, 1, "is a winpe, not a disk image"},
		{catalog.KindDrivers, 1, "imagefarm media build --drivers"},
		{catalog.KindPPKG, 1, "imagefarm media build --ppkg"},
		{catalog.KindUpdate, 1, "image x:1 is an update, not a disk image: only disk images are written to drives; build a USB key's disk image from it with imagefarm media build --updates"},
		{catalog.KindHook, 1, "imagefarm media build --hook"},
		{catalog.KindRecovery, 1, "imagefarm media build --recovery"},
		{catalog.KindFile, 1, "image x:1 is a file, not a disk image: only disk images are written to drives; push the drive's raw image with --kind disk"},
		{catalog.KindFile, 0, "is a file, not a disk image"},
		{catalog.KindBootEnv, 1, "image x:1 is a bootenv, not a disk image: only disk images are written to drives; a deploy environment is what laptops netboot"},
	} {
		err := (&catalog.Manifest{Name: "x", Version: "1", Kind: tc.kind, Size: tc.size}).ForDrive()
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, catalog.ErrNotForDrive) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ForDrive(a %s of %d bytes) = %v, want %q", tc.kind, tc.size, err, tc.want)
		}
	}
}
