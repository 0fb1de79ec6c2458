package kmod

import (
	"bytes"
	"fmt"
	"strings"
)

// Module is one module file to load.
type Module struct {
	// Name is the module's canonical name (Name).
	Name string
	// Path is its file in the tree, as modules.dep names it.
	Path string
	// Deps are the names of the modules it needs loaded first
	// (modules.dep), in modules.dep's order.
	Deps []string
}

// Resolution is what a set of module names needs.
type Resolution struct {
	// Modules are the files to load, each after every module it needs
	// and its "pre" soft dependencies, and before its "post" ones; each
	// once.
	Modules []Module
	// Builtin are the asked-for names that the kernel has built in:
	// nothing to load.
	Builtin []string
}

// Resolve returns the modules that names need, in load order. A name
// that is neither a module nor built in is an error wrapping
// ErrNoModule; a soft dependency that the tree does not have is left out,
// as modprobe does. Soft dependencies that are aliases (crct10dif) take
// every module modules.alias gives them.
func (t *Tree) Resolve(names []string) (Resolution, error) {
	r := resolver{t: t, state: map[string]visit{}}
	for _, n := range names {
		if err := r.visit(Name(n), true); err != nil {
			return Resolution{}, err
		}
	}
	return r.res, nil
}

type visit uint8

const (
	unseen visit = iota
	visiting
	visited
)

type resolver struct {
	t     *Tree
	state map[string]visit
	res   Resolution
}

// visit adds name and what it needs to the resolution. A module already
// visited, or being visited (a soft dependency loop), is not added again.
func (r *resolver) visit(name string, required bool) error {
	if r.state[name] != unseen {
		return nil
	}
	file, ok := r.t.paths[name]
	if !ok {
		return r.notModule(name, required)
	}
	r.state[name] = visiting
	sd := r.t.soft[name]
	for _, pre := range sd.pre {
		if err := r.visit(Name(pre), false); err != nil {
			return err
		}
	}
	for _, dep := range r.t.deps[name] {
		if _, ok := r.t.paths[dep]; !ok {
			return fmt.Errorf("modules tree %s: modules.dep says %s needs %s, which it does not list: run depmod again", r.t.dir, name, dep)
		}
		if err := r.visit(dep, true); err != nil {
			return err
		}
	}
	r.res.Modules = append(r.res.Modules, Module{Name: name, Path: file, Deps: r.t.deps[name]})
	r.state[name] = visited
	for _, post := range sd.post {
		if err := r.visit(Name(post), false); err != nil {
			return err
		}
	}
	return nil
}

// notModule handles a name with no module file: built in, an alias (for
// a soft dependency), or, when required, an error.
func (r *resolver) notModule(name string, required bool) error {
	r.state[name] = visited
	switch {
	case r.t.builtin[name]:
		if required {
			r.res.Builtin = append(r.res.Builtin, name)
		}
		return nil
	case !required:
		for _, m := range r.t.modulesFor(name) {
			if err := r.visit(m, false); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("kernel modules in %s have no module %s, and it is not built in: check its name (modinfo %s) or leave it out: %w",
		r.t.dir, name, name, ErrNoModule)
}

// Uncompressed returns a module file's path without its compression
// suffix: where the deploy environment keeps it, decompressed.
func Uncompressed(file string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(file, ".ko"+ext) {
			return strings.TrimSuffix(file, ext)
		}
	}
	return file
}

// DepFile returns a modules.dep for exactly the resolved modules, with
// uncompressed file names, in load order: what the deploy environment's
// module loader reads.
func (r Resolution) DepFile() []byte {
	files := map[string]string{}
	for _, m := range r.Modules {
		files[m.Name] = Uncompressed(m.Path)
	}
	var b bytes.Buffer
	for _, m := range r.Modules {
		b.WriteString(files[m.Name] + ":")
		for _, d := range m.Deps {
			b.WriteString(" " + files[d])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// LoadOrder returns the modules' names, one a line, in load order.
func (r Resolution) LoadOrder() []byte {
	var b bytes.Buffer
	for _, m := range r.Modules {
		b.WriteString(m.Name + "\n")
	}
	return b.Bytes()
}
