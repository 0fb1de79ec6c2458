package media

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imagefarm/imagefarm/media/fatdisk"
)

// updateExts are the update packages DISM's /Add-Package takes.
var updateExts = []string{".msu", ".cab"}

// UpdateExt returns the extension, in lower case, of the file an update
// package was pushed from (its manifest's source): .msu or .cab. DISM
// tells the two apart by their names, so a package pushed under another
// name is refused.
func UpdateExt(source string) (string, error) {
	ext := strings.ToLower(path.Ext(source))
	if !slices.Contains(updateExts, ext) {
		return "", fmt.Errorf("update package %q is not a .msu or .cab file: push the package Microsoft ships (windows11.0-kb5044284-x64.msu) under its own name", source)
	}
	return ext, nil
}

// keyUpdate is an update package on a key or a staged volume.
type keyUpdate struct {
	File string // its name in the updates folder: NN-<image name><ext>, NN its place in the order
	Ref  string // the ref it came from
}

// keyHook is a hook folder on a key or a staged volume.
type keyHook struct {
	Folder  string            // its name in the hooks folder: NN-<image name>
	Ref     string            // the ref it came from
	Scripts map[string]string // point -> script file name
}

// HookCall is one script deploy.cmd or SetupComplete.cmd runs.
type HookCall struct {
	Folder, Script, Ref string
}

// calls returns, for each point, the scripts of hooks that run there, in
// the hooks' order.
func hookCalls(hooks []keyHook) map[string][]HookCall {
	calls := map[string][]HookCall{}
	for _, point := range HookPoints {
		for _, h := range hooks {
			if s, ok := h.Scripts[point]; ok {
				calls[point] = append(calls[point], HookCall{Folder: h.Folder, Script: s, Ref: h.Ref})
			}
		}
	}
	return calls
}

// update pulls the n-th update package (from 1) into folder, a slash path
// both in the work folder and on the key.
func (b *builder) update(ctx context.Context, in Input, n int, folder string) error {
	ext, err := UpdateExt(in.Manifest.Source)
	if err != nil {
		return err
	}
	u := keyUpdate{File: fmt.Sprintf("%02d-%s%s", n, in.Ref.Name, ext), Ref: in.Ref.String()} // ident allows only letters, digits and ._+-:
	dir := filepath.Join(b.work, filepath.FromSlash(folder))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	local := filepath.Join(dir, u.File)
	if err := b.c.PullFile(ctx, in.Manifest, local, nil); err != nil {
		return err
	}
	b.files = append(b.files, fatdisk.File{Path: path.Join(folder, u.File), Source: local})
	b.updates = append(b.updates, u)
	return nil
}

// hook pulls the n-th hook (from 1) into folder, a slash path both in the
// work folder and on the key, and checks its scripts.
func (b *builder) hook(ctx context.Context, in Input, n int, folder string) error {
	h := keyHook{Folder: fmt.Sprintf("%02d-%s", n, in.Ref.Name), Ref: in.Ref.String()} // ident allows only letters, digits and ._+-:
	if err := os.MkdirAll(filepath.Join(b.work, filepath.FromSlash(folder)), 0o755); err != nil {
		return err
	}
	dir, err := b.extract(ctx, in, filepath.Join(filepath.FromSlash(folder), h.Folder))
	if err != nil {
		return err
	}
	if h.Scripts, err = HookScripts(dir); err != nil {
		return err
	}
	b.hooks = append(b.hooks, h)
	return b.addTree(dir, path.Join(folder, h.Folder))
}
