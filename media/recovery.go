package media

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/dustin/go-humanize"

	"github.com/imagefarm/imagefarm/media/fatdisk"
)

// ErrTooLargeForFAT32 is a file of 4 GiB or more, which the FAT32 file
// system of a key cannot hold.
var ErrTooLargeForFAT32 = errors.New("media: file too large for FAT32")

// recoveryBootFile is what UEFI firmware boots a recovery key from.
const recoveryBootFile = "EFI/Boot/bootx64.efi"

// CheckKeyFile refuses the file name (a slash path) of a recovery drive,
// size bytes, when it cannot be on a key's FAT32: fatdisk.ErrBadFile for a
// name FAT32 cannot hold, ErrTooLargeForFAT32 for a file of 4 GiB or more,
// each saying what to do.
func CheckKeyFile(name string, size int64) error {
	if err := fatdisk.CheckPath(name); err != nil {
		return fmt.Errorf("%w; rename it in the recovery drive and push it again", err)
	}
	if size <= fatdisk.MaxFileSize {
		return nil
	}
	return fmt.Errorf("%w: %s is %s (%d bytes), and FAT32, the only file system of the keys media build writes, holds files under 4 GiB; "+
		"if it is a WIM the recovery tool also takes split (.swm), split it with wimlib-imagex split %s %s 4000 and push the folder again; "+
		"otherwise this recovery image needs an NTFS key, which media build does not write",
		ErrTooLargeForFAT32, name, humanize.IBytes(uint64(size)), size, filepath.Base(name), swmName(name))
}

func swmName(name string) string {
	return filepath.Base(name[:len(name)-len(filepath.Ext(name))]) + ".swm"
}

// CheckRecoveryFolder refuses a recovery drive folder with a file that
// cannot be on a key's FAT32 (CheckKeyFile).
func CheckRecoveryFolder(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		return CheckKeyFile(filepath.ToSlash(rel), fi.Size())
	})
}

// recovery unpacks a manufacturer's recovery drive to the key's root, as
// it is, refusing one UEFI firmware cannot boot or one with a file too
// large for FAT32.
func (b *builder) recovery(ctx context.Context, in Input) error {
	dir, err := b.extract(ctx, in, "recovery")
	if err != nil {
		return err
	}
	if !existsFold(dir, recoveryBootFile) {
		return fmt.Errorf("%w: no %s; a recovery drive boots from it by UEFI", ErrNotBootable, recoveryBootFile)
	}
	if err := CheckRecoveryFolder(dir); err != nil {
		return err
	}
	return b.addTree(dir, "")
}
