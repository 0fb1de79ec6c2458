package bundle

import (
	"archive/tar"
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/internal/userpath"
)

// ErrBadZip is wrapped by WriteZip's errors for a zip that cannot become
// a folder: an entry that is not a plain relative path, a link, an
// encrypted entry or a name twice.
var ErrBadZip = errors.New("bundle: zip cannot be a folder")

// ZipEntry is a file or folder of a zip as WriteZip reads it.
type ZipEntry struct {
	Name string // slash path in the folder
	Dir  bool
	Size int64
	file *zip.File // nil for a folder the zip names only as a parent
}

// ZipEntries checks every entry of the zip z and returns its files and
// folders, the parents of its files too, in the order a bundle of the
// folder it unpacks to holds them. The names must be relative paths that
// stay in the folder: an absolute name, a drive letter, a ".." element, a
// link or an encrypted entry is refused, and so is a name twice ignoring
// case (Windows and FAT32 ignore it). A backslash is taken as the
// separator some Windows tools write.
func ZipEntries(z *zip.Reader) ([]ZipEntry, error) {
	entries := map[string]*ZipEntry{}
	folded := map[string]string{}
	add := func(e *ZipEntry, raw string) error {
		if prev, ok := entries[e.Name]; ok {
			if prev.Dir && e.Dir {
				return nil
			}
			return fmt.Errorf("%w: entry %q names %s twice", ErrBadZip, raw, e.Name)
		}
		if prev, ok := folded[strings.ToLower(e.Name)]; ok {
			return fmt.Errorf("%w: entries %q and %q name one file on Windows, which ignores case", ErrBadZip, prev, e.Name)
		}
		entries[e.Name], folded[strings.ToLower(e.Name)] = e, e.Name
		return nil
	}
	for _, f := range z.File {
		name, err := zipName(f)
		if err != nil {
			return nil, err
		}
		for dir := path.Dir(name); dir != "." && name != ""; dir = path.Dir(dir) {
			if err := add(&ZipEntry{Name: dir, Dir: true}, f.Name); err != nil {
				return nil, err
			}
		}
		if name == "" { // the folder itself
			continue
		}
		e := &ZipEntry{Name: name, Dir: f.FileInfo().IsDir(), file: f}
		if !e.Dir {
			e.Size = int64(f.UncompressedSize64)
		}
		if err := add(e, f.Name); err != nil {
			return nil, err
		}
	}
	out := make([]ZipEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b ZipEntry) int { return comparePaths(a.Name, b.Name) })
	return out, nil
}

func zipName(f *zip.File) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: entry %q %s; the zip must hold only files and folders under relative paths", ErrBadZip, f.Name, why)
	}
	name := strings.ReplaceAll(f.Name, `\`, "/")
	mode := f.Mode()
	switch {
	case strings.HasPrefix(name, "/") || len(name) > 1 && name[1] == ':':
		return "", bad("is an absolute path")
	case slices.Contains(strings.Split(name, "/"), ".."):
		return "", bad(`has a ".." element, which leaves the folder`)
	case strings.ContainsAny(name, ":\x00"):
		return "", bad("has a character Windows names cannot hold")
	case !mode.IsRegular() && !mode.IsDir():
		return "", bad("is " + userpath.Describe(mode))
	case f.Flags&0x1 != 0:
		return "", bad("is encrypted")
	}
	return path.Clean("/" + name)[1:], nil
}

// comparePaths orders slash paths as a walk of the folder meets them:
// element by element, so "a/b" comes before "a.txt".
func comparePaths(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// WriteZip writes the files of the zip z to w as a bundle: the bundle of
// the folder the zip unpacks to, byte for byte. Its entries are checked
// first (ZipEntries), so a bad zip writes nothing.
func WriteZip(w io.Writer, z *zip.Reader) error {
	entries, err := ZipEntries(z)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if e.Dir {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: e.Name + "/", Mode: dirMode, ModTime: epoch})
		} else {
			err = writeZipFile(tw, e)
		}
		if err != nil {
			return fmt.Errorf("zip entry %s: %w", e.Name, err)
		}
	}
	return tw.Close()
}

func writeZipFile(tw *tar.Writer, e ZipEntry) error {
	r, err := e.file.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.Name, Size: e.Size, Mode: fileMode, ModTime: epoch}); err != nil {
		return err
	}
	// The zip reader checks the size and CRC-32 at the end of the entry.
	_, err = io.Copy(tw, r)
	return err
}
