package deployenv

import (
	"strings"
	"testing"
)

// TestResetToolsCarryWhatTheyNeed: the reset tools come with their ELF
// interpreter and every shared library their DT_NEEDED entries name
// (wimlib's libwim, ntfs-3g's libntfs-3g, libc), and hivexget, a bash
// script, with bash and the hivexsh it runs.
func TestResetToolsCarryWhatTheyNeed(t *testing.T) {
	// scripts/test.sh installs wimtools, ntfs-3g and libhivex-bin: a
	// missing one fails the test, naming it.
	files, err := toolFiles(ResetTools)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range files {
		names = append(names, p)
	}
	all := strings.Join(names, " ")
	for _, want := range []string{"/bin/bash", "/hivexsh", "/wimlib-imagex", "/mkntfs", "/ntfs-3g", "/libwim.so.", "/libntfs-3g.so.", "/libc.so.6", "/ld-linux-x86-64.so.2"} {
		if !strings.Contains(all, want) {
			t.Errorf("reset tools' files %v: nothing like %s", names, want)
		}
	}
	if _, err := toolFiles([]string{"no-such-tool-anywhere"}); err == nil || !strings.Contains(err.Error(), "install wimtools") {
		t.Errorf("toolFiles(a missing tool) = %v, want an error saying what to install", err)
	}
}
