package reset_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imagefarm/imagefarm/deployenv/reset"
	"github.com/imagefarm/imagefarm/tests/testenv"
)

// Files of the fixture beyond testenv's Windows disk.
const (
	customization = "Recovery/Customizations/Corp.ppkg"
	systemHive    = "Windows/System32/config/SYSTEM"
)

// hiveJoins say what a test SYSTEM hive holds.
type hiveJoins struct {
	domain string // Tcpip\Parameters Domain, "" for none
	aad    bool   // a CloudDomainJoin\JoinInfo entry
}

// makeHive is a SYSTEM hive written by hivexsh from libhivex-bin, starting
// from hivex's own minimal hive (testdata/minimal.hive): Select\Current 1
// and ControlSet001 with the joins asked for.
func makeHive(t testing.TB, j hiveJoins) string {
	t.Helper()
	hive := filepath.Join(t.TempDir(), "SYSTEM")
	b, err := os.ReadFile("testdata/minimal.hive")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hive, b, 0o644); err != nil {
		t.Fatal(err)
	}
	script := "add Select\ncd Select\nsetval 1\nCurrent\ndword:1\ncd \\\nadd ControlSet001\ncd ControlSet001\n" +
		"add Services\ncd Services\nadd Tcpip\ncd Tcpip\nadd Parameters\ncd Parameters\n"
	if j.domain != "" {
		script += "setval 1\nDomain\nstring:" + j.domain + "\n"
	}
	script += "cd \\ControlSet001\nadd Control\ncd Control\nadd CloudDomainJoin\ncd CloudDomainJoin\nadd JoinInfo\n"
	if j.aad {
		script += "cd JoinInfo\nadd 8A5D0F3C1E2B4A6F9C7D8E1F2A3B4C5D6E7F8091\n"
	}
	script += "commit\n"
	testenv.RunStdin(t, script, "libhivex-bin", "hivexsh", "-w", hive)
	b, err = os.ReadFile(hive)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newDisk is testenv's Windows disk with a SYSTEM hive (joins j) and a
// provisioning package in Recovery/Customizations.
func newDisk(t testing.TB, j hiveJoins, opts testenv.WindowsDiskOptions) *testenv.WindowsDisk {
	t.Helper()
	testenv.Tool(t, "hivexsh", "libhivex-bin")
	if opts.Files == nil {
		opts.Files = map[string]string{}
	}
	opts.Files[systemHive] = makeHive(t, j)
	opts.Files[customization] = "PK\x03\x04 customization package\n"
	return testenv.NewWindowsDisk(t, opts)
}

// newImage is the WIM a reset applies: a new Windows with its own SYSTEM
// hive, and a Wlansvc folder the keep-list merges into.
func newImage(t testing.TB) (string, map[string]string) {
	t.Helper()
	files := map[string]string{
		"Windows/System32/ntoskrnl.exe":                "MZ new Windows kernel\n",
		systemHive:                                     makeHive(t, hiveJoins{}),
		"Windows/explorer.exe":                         "MZ explorer\n",
		"ProgramData/Microsoft/Wlansvc/Profiles/.keep": "",
		"Program Files/Contoso/app.exe":                strings.Repeat("contoso ", 4096),
		"Users/Public/Desktop/readme.txt":              "new public desktop\n",
		"Users/Default/NTUSER.DAT":                     "regf default profile\n",
	}
	return testenv.CaptureWIM(t, files, "Windows 11 Enterprise"), files
}

// partitionHashes hashes every partition but Windows, after a sync, so
// that anything written through a loop device is in the image file.
func partitionHashes(t testing.TB, d *testenv.WindowsDisk) map[int]string {
	t.Helper()
	unix.Sync()
	h := map[int]string{}
	for n := range d.Partitions {
		if n != testenv.WindowsPartition {
			h[n] = d.PartitionSHA256(t, n)
		}
	}
	return h
}

// diskHash is the SHA-256 of the whole image, after a sync.
func diskHash(t testing.TB, d *testenv.WindowsDisk) string {
	t.Helper()
	unix.Sync()
	return testenv.SHA256(t, d.Path, -1)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// plan is a reset of d to image with a State in a new folder.
func plan(t testing.TB, d *testenv.WindowsDisk, image string) reset.Plan {
	return reset.Plan{Disk: d.Path, Image: image, Index: 1, State: reset.DirState(filepath.Join(t.TempDir(), "state")), Scratch: t.TempDir()}
}

// stateEmpty fails the test when a refused Run saved anything.
func stateEmpty(t testing.TB, p reset.Plan) {
	t.Helper()
	entries, err := os.ReadDir(string(p.State.(reset.DirState)))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("a refused reset saved state: %v", entries)
	}
}
