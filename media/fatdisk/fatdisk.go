package fatdisk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// ErrBadFile is wrapped by Write's errors for a file that cannot be on a
// FAT32 volume: a name it cannot hold, two names that differ only in case,
// or a size of 4 GiB or more.
var ErrBadFile = errors.New("fatdisk: file cannot be on FAT32")

// MaxFileSize is the largest file FAT32 can hold: its sizes are 32 bits.
const MaxFileSize = 1<<32 - 1

// PartitionStart is the byte offset of the FAT32 partition in the image.
const PartitionStart = partitionLBA * sectorSize

// File is one file, or one empty folder, of the image. Folders that hold
// files are made as needed.
type File struct {
	Path   string // slash-separated path on the volume, such as "EFI/Boot/bootx64.efi"
	Dir    bool   // an empty folder
	Source string // the local file with the contents; when empty, Data is the contents
	Data   []byte
}

// Options are what would otherwise differ between two images of the same
// files: with the same Options, Write gives the same bytes.
type Options struct {
	Label    string    // volume label: up to 11 of A-Z, 0-9, space, '-' and '_'; "NO NAME" when empty
	VolumeID uint32    // the FAT volume serial number
	DiskID   uint32    // the MBR disk signature
	Time     time.Time // the time stamp of every file and folder
}

// node is a file or folder in the volume's tree.
type node struct {
	name     string
	parent   *node // nil for the root
	dir      bool
	file     *File
	size     int64   // bytes of a file; of a folder, its entries
	children []*node // of a folder, sorted by name
	byName   map[string]*node
	short    [11]byte
	longName bool   // the entry needs long-name (LFN) entries
	cluster  uint32 // first cluster, 0 for an empty file
	clusters uint32
}

// Write writes an image holding files to w and returns its size. Nothing
// is written unless every file can be on the volume. Sources are read
// once, in the order they lie in the image; one whose size changed since
// the layout was made fails the write.
func Write(w io.Writer, files []File, opts Options) (int64, error) {
	label, err := volumeLabel(opts.Label)
	if err != nil {
		return 0, err
	}
	root, err := buildTree(files)
	if err != nil {
		return 0, err
	}
	l, err := newLayout(root)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	iw := &imageWriter{w: bw, l: l, label: label, opts: opts}
	if err := iw.write(); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return l.imageBytes(), nil
}

// buildTree checks every path and name and returns the root folder.
func buildTree(files []File) (*node, error) {
	root := &node{dir: true, byName: map[string]*node{}}
	for i := range files {
		f := &files[i]
		parts := strings.Split(f.Path, "/")
		if f.Path == "" || path.Clean(f.Path) != f.Path || parts[0] == ".." || path.IsAbs(f.Path) {
			return nil, fmt.Errorf("%w: path %q is not a clean relative path", ErrBadFile, f.Path)
		}
		dir := root
		for j, name := range parts {
			if err := checkName(name); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadFile, f.Path, err)
			}
			last := j == len(parts)-1
			n, ok := dir.byName[strings.ToUpper(name)]
			switch {
			case ok && (!n.dir || last && !f.Dir):
				return nil, fmt.Errorf("%w: %s: the folder already has %q (FAT32 names ignore case)", ErrBadFile, f.Path, n.name)
			case !ok:
				n = &node{name: name, parent: dir, dir: !last || f.Dir}
				if n.dir {
					n.byName = map[string]*node{}
				}
				dir.byName[strings.ToUpper(name)] = n
				dir.children = append(dir.children, n)
			}
			dir = n
		}
		if !f.Dir {
			if err := dir.setFile(f); err != nil {
				return nil, err
			}
		}
	}
	return root, sortTree(root)
}

func (n *node) setFile(f *File) error {
	n.file, n.size = f, int64(len(f.Data))
	if f.Source != "" {
		fi, err := os.Stat(f.Source)
		if err != nil {
			return fmt.Errorf("fatdisk: %s: %w", f.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s: source %s is not a regular file", ErrBadFile, f.Path, f.Source)
		}
		n.size = fi.Size()
	}
	if n.size > MaxFileSize {
		return fmt.Errorf("%w: %s is %d bytes; a FAT32 file holds at most 4 GiB - 1 byte", ErrBadFile, f.Path, n.size)
	}
	return nil
}

// walk calls fn on n and everything under it, folders before what they
// hold, names in sorted order.
func (n *node) walk(fn func(*node) error) error {
	if err := fn(n); err != nil {
		return err
	}
	for _, c := range n.children {
		if err := c.walk(fn); err != nil {
			return err
		}
	}
	return nil
}

// sortTree sorts every folder's entries by name and gives each its short
// name, so the layout does not depend on the order files were listed in.
func sortTree(root *node) error {
	return root.walk(func(n *node) error {
		slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		used := map[[11]byte]bool{}
		for _, c := range n.children {
			c.short, c.longName = shortName(c.name, used)
			used[c.short] = true
		}
		return nil
	})
}

// imageWriter writes the image front to back, counting bytes.
type imageWriter struct {
	w     *bufio.Writer
	l     *layout
	label [11]byte
	opts  Options
	off   int64
}

func (iw *imageWriter) Write(p []byte) (int, error) {
	n, err := iw.w.Write(p)
	iw.off += int64(n)
	return n, err
}

// padTo writes zeros up to the image offset off.
func (iw *imageWriter) padTo(off int64) error {
	for iw.off < off {
		n := min(off-iw.off, int64(len(zeros)))
		if _, err := iw.Write(zeros[:n]); err != nil {
			return err
		}
	}
	return nil
}

var zeros [64 << 10]byte

func (iw *imageWriter) write() error {
	l := iw.l
	steps := []func() error{
		func() error { _, err := iw.Write(l.mbr(iw.opts.DiskID)); return err },
		func() error { return iw.bootRegion() },
		func() error { return iw.fats() },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	for _, n := range l.order {
		if err := iw.padTo(l.clusterOffset(n.cluster)); err != nil {
			return err
		}
		var err error
		if n.dir {
			_, err = iw.Write(l.dirBytes(n, iw.label, iw.opts.Time))
		} else {
			err = iw.fileData(n)
		}
		if err != nil {
			return err
		}
	}
	return iw.padTo(l.imageBytes())
}

func (iw *imageWriter) fileData(n *node) error {
	f := n.file
	if f.Source == "" {
		_, err := iw.Write(f.Data)
		return err
	}
	src, err := os.Open(f.Source)
	if err != nil {
		return fmt.Errorf("fatdisk: %s: %w", f.Path, err)
	}
	defer src.Close()
	copied, err := io.Copy(iw, io.LimitReader(src, n.size))
	if err != nil {
		return fmt.Errorf("fatdisk: %s: %w", f.Path, err)
	}
	if copied != n.size {
		return fmt.Errorf("fatdisk: %s: %s has %d bytes, had %d when the layout was made", f.Path, f.Source, copied, n.size)
	}
	return nil
}
