package deployenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The files of a deploy environment's folder (and of its bundle in the
// catalog).
const (
	KernelFile = "vmlinuz"  // the kernel, as it came
	InitrdFile = "initrd"   // the initramfs: a zstd-compressed newc cpio
	InfoFile   = "env.json" // Info
)

// LoadOrderFile is the file, beside modules.dep in the initramfs's
// /lib/modules/RELEASE, that lists the modules to load, one a line, in
// load order.
const LoadOrderFile = "imagefarm.modules"

// SchemaVersion is the env.json schema this package writes and reads.
const SchemaVersion = 1

// ErrBadEnv is wrapped by the error for a folder or bundle that is not a
// deploy environment this package made.
var ErrBadEnv = errors.New("deployenv: not a deploy environment")

// Info is what env.json says about a deploy environment. It holds
// nothing that changes from one build to the next of the same inputs.
type Info struct {
	SchemaVersion int    `json:"schema_version"`
	KernelRelease string `json:"kernel_release"`
	// Init is the init program (imagefarm) the initramfs holds.
	Init FileInfo `json:"init"`
	// Modules are the kernel modules it holds, in load order.
	Modules []string `json:"modules"`
	// Builtin are the modules asked for that the kernel has built in.
	Builtin []string `json:"builtin,omitempty"`
	// Files are the folder's files but env.json: KernelFile and InitrdFile.
	Files map[string]FileInfo `json:"files"`
	// Trust is the farm CA and signing keys its initramfs holds.
	Trust Trust `json:"trust"`
}

// FileInfo is a file's size and SHA-256.
type FileInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ReadInfo reads dir's env.json and checks that the kernel and initramfs
// it names are there with its sizes and SHA-256s.
func ReadInfo(dir string) (*Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, fmt.Errorf("deploy environment %s: %w", dir, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("deploy environment %s: %s: %v: %w", dir, InfoFile, err, ErrBadEnv)
	}
	if info.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("deploy environment %s: schema version %d, this imagefarm reads %d: %w", dir, info.SchemaVersion, SchemaVersion, ErrBadEnv)
	}
	for _, name := range []string{KernelFile, InitrdFile} {
		want, ok := info.Files[name]
		if !ok {
			return nil, fmt.Errorf("deploy environment %s: %s names no %s: %w", dir, InfoFile, name, ErrBadEnv)
		}
		got, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("deploy environment %s: %v: %w", dir, err, ErrBadEnv)
		}
		if got != want {
			return nil, fmt.Errorf("deploy environment %s: %s has %d bytes, sha256 %s; %s says %d, %s: %w",
				dir, name, got.Size, got.SHA256, InfoFile, want.Size, want.SHA256, ErrBadEnv)
		}
	}
	return &info, nil
}

func hashFile(path string) (FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
