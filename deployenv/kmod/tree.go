package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNoModule is wrapped by Resolve's error for a name the kernel has
// neither as a module nor built in.
var ErrNoModule = errors.New("kmod: no such module")

// Tree is a kernel's modules tree (/lib/modules/RELEASE) as depmod
// describes it.
type Tree struct {
	dir     string
	paths   map[string]string   // module name → its file, relative to dir
	deps    map[string][]string // module name → names of every module it needs (modules.dep)
	builtin map[string]bool     // names of modules built into the kernel
	soft    map[string]softdep  // module name → its soft dependencies
	aliases []alias             // modules.alias, in file order
}

type softdep struct{ pre, post []string }

type alias struct{ pattern, module string }

// Name returns a module's canonical name: kernel module names treat '-'
// and '_' as the same character, and a file's name is its module's name
// with .ko and any compression suffix.
func Name(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// Open reads the modules tree in dir. modules.dep must be there;
// modules.builtin, modules.softdep and modules.alias are read when they
// are.
func Open(dir string) (*Tree, error) {
	t := &Tree{dir: dir, paths: map[string]string{}, deps: map[string][]string{},
		builtin: map[string]bool{}, soft: map[string]softdep{}}
	if err := t.readDep(); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name  string
		parse func([]string)
	}{{"modules.builtin", t.parseBuiltin}, {"modules.softdep", t.parseSoftdep}, {"modules.alias", t.parseAlias}} {
		if err := readLines(filepath.Join(dir, f.name), f.parse); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("modules tree %s: %w", dir, err)
		}
	}
	return t, nil
}

// Dir returns the folder the tree was read from.
func (t *Tree) Dir() string { return t.dir }

func (t *Tree) readDep() error {
	var bad error
	err := readLines(filepath.Join(t.dir, "modules.dep"), func(f []string) {
		if len(f) == 0 || !strings.HasSuffix(f[0], ":") {
			bad = cmpErr(bad, fmt.Errorf("modules.dep line %q is not \"FILE: DEPENDENCIES\"", strings.Join(f, " ")))
			return
		}
		file := strings.TrimSuffix(f[0], ":")
		name := Name(file)
		t.paths[name] = file
		for _, d := range f[1:] {
			t.deps[name] = append(t.deps[name], Name(d))
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return fmt.Errorf("modules tree %s: %w (is it a kernel's /lib/modules/RELEASE folder, with depmod run?)", t.dir, err)
	}
	return nil
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

func (t *Tree) parseBuiltin(f []string) {
	if len(f) == 1 {
		t.builtin[Name(f[0])] = true
	}
}

// parseSoftdep reads "softdep MODULE pre: A B post: C".
func (t *Tree) parseSoftdep(f []string) {
	if len(f) < 3 || f[0] != "softdep" {
		return
	}
	name := Name(f[1])
	sd := t.soft[name]
	var into *[]string
	for _, w := range f[2:] {
		switch w {
		case "pre:":
			into = &sd.pre
		case "post:":
			into = &sd.post
		default:
			if into != nil {
				*into = append(*into, w)
			}
		}
	}
	t.soft[name] = sd
}

func (t *Tree) parseAlias(f []string) {
	if len(f) == 3 && f[0] == "alias" {
		t.aliases = append(t.aliases, alias{pattern: f[1], module: Name(f[2])})
	}
}

// modulesFor returns the modules an alias names, in modules.alias order.
func (t *Tree) modulesFor(name string) []string {
	var out []string
	for _, a := range t.aliases {
		if ok, _ := path.Match(a.pattern, name); ok {
			out = append(out, a.module)
		}
	}
	return out
}

// readLines calls parse with the fields of every line of the file that
// is not blank or a comment.
func readLines(file string, parse func([]string)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parse(strings.Fields(line))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(file), err)
	}
	return nil
}
