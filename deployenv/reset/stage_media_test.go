package reset_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/media"
	"github.com/imagefarm/imagefarm/storage"
	"github.com/imagefarm/imagefarm/storage/bundle"
	"github.com/imagefarm/imagefarm/storage/catalog"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// TestResetStagesFirstBoot: a reset whose Plan.Stage is the folder
// media.Stage made of two update packages and a hook leaves, on the new
// Windows volume read through ntfs-3g, a SetupComplete.cmd that adds the
// packages in order and runs the hook, and the packages themselves.
func TestResetStagesFirstBoot(t *testing.T) {
	testenv.RequireRoot(t)
	store, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.New(store, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	testenv.WriteTree(t, src, map[string]string{
		"windows11.0-kb5043080-x64.msu": "MSCF servicing stack\n",
		"windows11.0-kb5044284-x64.msu": "MSCF cumulative update\n",
		"hook/after-apply.cmd":          "@echo tagged & exit /b 0\r\n",
	})
	push := func(name, file string, kind catalog.Kind) catalog.Ref {
		path := filepath.Join(src, file)
		if kind.Folder() {
			tarFile := filepath.Join(t.TempDir(), "bundle.tar")
			out, err := os.Create(tarFile)
			if err == nil {
				err = bundle.Write(out, path)
				out.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			path = tarFile
		}
		if _, err := c.PushFile(t.Context(), path, catalog.PushOptions{Name: name, Version: "1", Kind: kind, Source: filepath.Base(file)}); err != nil {
			t.Fatal(err)
		}
		return catalog.Ref{Name: name, Tag: "1"}
	}
	ssu, lcu := push("kb5043080", "windows11.0-kb5043080-x64.msu", catalog.KindUpdate), push("kb5044284", "windows11.0-kb5044284-x64.msu", catalog.KindUpdate)
	hook := push("asset-tag", "hook", catalog.KindHook)
	stage := filepath.Join(t.TempDir(), "stage")
	if _, err := media.Stage(t.Context(), c, media.StageSpec{Updates: []catalog.Ref{ssu, lcu}, Hooks: []catalog.Ref{hook}, Dir: stage}); err != nil {
		t.Fatal(err)
	}

	d := newDisk(t, hiveJoins{}, testenv.WindowsDiskOptions{})
	image, _ := newImage(t)
	p := plan(t, d, image)
	p.Stage = []string{stage}
	if _, err := reset.Run(t.Context(), p, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := testenv.NTFSFiles(t, d.AttachPartition(t, testenv.WindowsPartition).Path)
	if got["Windows/Setup/Scripts/imagefarm/updates/02-kb5044284.msu"] != "MSCF cumulative update\n" ||
		got["Windows/Setup/Scripts/imagefarm/hooks/01-asset-tag/after-apply.cmd"] != "@echo tagged & exit /b 0\r\n" {
		t.Errorf("the new volume lacks the staged update or hook")
	}
	script := got["Windows/Setup/Scripts/SetupComplete.cmd"]
	first := strings.Index(script, `call :update "01-kb5043080.msu" "kb5043080:1" || goto :failed`)
	second := strings.Index(script, `call :update "02-kb5044284.msu" "kb5044284:1" || goto :failed`)
	hooked := strings.Index(script, `call :hook after-apply "01-asset-tag" "after-apply.cmd" "asset-tag:1" || goto :failed`)
	if first < 0 || second < first || hooked < second {
		t.Errorf("SetupComplete.cmd on the new volume does not add the updates in order, then run the hook:\n%s", script)
	}
}
