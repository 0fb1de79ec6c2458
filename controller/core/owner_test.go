package core

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storeWrites are the stores' methods that write a job, task, drive,
// node, model or rollout record.
var storeWrites = map[string]bool{"CreateJob": true, "UpdateJob": true, "CreateTask": true, "UpdateTask": true,
	"UpdateDrive": true, "UpdateDriveIfStored": true, "DeleteDrive": true, "UpdateNode": true,
	"WriteModel": true, "WriteRollout": true} // controller/fleet's

// TestOnlyTheCoreWritesRecords: no code outside controller/core (and the
// store itself) calls a store write, so every change of a record goes
// through apply and its table. Tests may (they set up records directly).
func TestOnlyTheCoreWritesRecords(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir() && (strings.HasPrefix(d.Name(), ".") || rel == "controller/core" || rel == "controller/state" || rel == "controller/fleet"):
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go"):
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && storeWrites[sel.Sel.Name] && !isCore(sel.X) {
					t.Errorf("%s: %s writes a record outside controller/core", fset.Position(call.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// isCore reports whether x is the core itself (x.core.CreateJob), whose
// methods of the same names are the way in.
func isCore(x ast.Expr) bool {
	sel, ok := x.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "core"
}
