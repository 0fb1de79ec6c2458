package wim

import (
	"bytes"
	"fmt"
	"os"
)

// guidOffset is where the header keeps the GUID.
const guidOffset = 24

// SetGUID writes guid into the header of the WIM file at path. Tools that
// write WIMs (wimlib-imagex export and split) draw a random GUID, the only
// thing that differs between two runs on the same input; setting one
// derived from the input makes their output the same. Every part of a
// split WIM must carry the same GUID. Pipable WIMs are refused.
func SetGUID(path string, guid [16]byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("set WIM GUID: %w", err)
	}
	defer f.Close()
	magic := make([]byte, len(magicWIM))
	if err := readFull(f, magic, 0); err != nil {
		return fmt.Errorf("set GUID of %s: %w", path, err)
	}
	if !bytes.Equal(magic, magicWIM) {
		return fmt.Errorf("set GUID of %s: %w", path, notWIM("bad magic %q", magic))
	}
	if _, err := f.WriteAt(guid[:], guidOffset); err != nil {
		return fmt.Errorf("set GUID of %s: %w", path, err)
	}
	return f.Close()
}
