package userpath

import (
	"fmt"
	"io/fs"
)

// TypeError says that a path is not the kind of file a command reads or
// writes there.
type TypeError struct {
	Path string
	Is   string // what the path is: "a named pipe (FIFO)", "a folder", ...
	Want string // what to give instead
}

func (e *TypeError) Error() string { return fmt.Sprintf("%s is %s: %s", e.Path, e.Is, e.Want) }

// What to give instead, for each use of a path.
const (
	wantInput     = "give a regular file"
	wantFolder    = "give a folder"
	wantOutput    = "give a new path or an existing regular file"
	wantDriveHint = "use imagefarm write to write drives; here give a new path or an existing regular file"
)

// Describe says what a file of mode m is, for people: "a regular file",
// "a named pipe (FIFO)", "a block device (a drive)", ...
func Describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device (a drive)"
	}
	return "a special file (" + m.Type().String() + ")"
}

// wrongType is the TypeError of path, of mode m, where want was asked for.
func wrongType(path string, m fs.FileMode, want string) *TypeError {
	if m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0 && want == wantOutput {
		want = wantDriveHint
	}
	return &TypeError{Path: path, Is: Describe(m), Want: want}
}
