package testenv

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Partition numbers of a WindowsDisk, in the order Windows Setup lays out a
// UEFI disk.
const (
	EFIPartition      = 1
	MSRPartition      = 2
	WindowsPartition  = 3
	RecoveryPartition = 4
)

// Paths on a WindowsDisk's volumes, slash-separated from the volume's root.
const (
	AliceDocument       = "Users/alice/Documents/notes.txt"
	WiFiProfileDir      = "ProgramData/Microsoft/Wlansvc/Profiles/Interfaces/{6B9C3A1E-2F4D-4E8A-9C1B-7D2E5F3A4B6C}"
	ProvisioningPackage = "ProgramData/Microsoft/Provisioning/Company.ppkg"
	WinREImage          = "Recovery/WindowsRE/Winre.wim"
	EFIBootManager      = "EFI/Microsoft/Boot/bootmgfw.efi"
)

// WindowsDiskOptions say how a WindowsDisk differs from the usual one.
type WindowsDiskOptions struct {
	WindowsSize int64             // bytes of the Windows partition; 0 is 96 MiB
	NoWinRE     bool              // the recovery partition holds no Recovery/WindowsRE/Winre.wim
	NoRecovery  bool              // no recovery partition at all: three partitions
	Files       map[string]string // more files on the Windows volume (path → content), e.g. registry hives
}

// WindowsDisk is a disk image file laid out as Windows Setup lays out a UEFI
// disk, made with tools this project did not write: sfdisk's GPT, an EFI
// system partition formatted by mkfs.vfat, an MSR, an NTFS Windows volume
// and an NTFS recovery volume (GPT type Windows recovery) made by mkntfs and
// filled by wimlib-imagex apply (wimlib's NTFS-3G mode, as a reset does).
// The image holds no loop device once made; its bytes change only when a
// test writes them, so partition hashes taken before and after compare.
type WindowsDisk struct {
	Path       string                // the image file
	Size       int64                 // bytes
	Partitions map[int]DiskPartition // by number, as sfdisk -J reads them back
	Files      map[string]string     // every file on the Windows volume: path → content
}

// DiskPartition is a partition's place on a disk, in bytes, and its type GUID.
type DiskPartition struct {
	Start, Size int64
	Type        string
}

// NewWindowsDisk makes a Windows disk image in the test's temporary folder.
// It needs root (loop devices) and the Debian packages fdisk, dosfstools,
// ntfs-3g and wimtools, which scripts/test.sh installs.
func NewWindowsDisk(t testing.TB, opts WindowsDiskOptions) *WindowsDisk {
	t.Helper()
	RequireRoot(t)
	if opts.WindowsSize == 0 {
		opts.WindowsSize = 96 << 20
	}
	d := &WindowsDisk{Path: filepath.Join(t.TempDir(), "windows.img"), Files: windowsFiles()}
	maps.Copy(d.Files, opts.Files)
	d.Size = (1+40+16+1)<<20 + opts.WindowsSize
	if !opts.NoRecovery {
		d.Size += 32 << 20
	}
	if err := os.WriteFile(d.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.Path, d.Size); err != nil {
		t.Fatal(err)
	}
	RunStdin(t, windowsLayout(opts), "fdisk", "sfdisk", "--quiet", d.Path)
	d.Partitions = ReadGPT(t, d.Path)
	d.formatEFI(t)
	d.formatNTFS(t, WindowsPartition, "Windows", d.Files)
	if !opts.NoRecovery {
		d.formatNTFS(t, RecoveryPartition, "Recovery", recoveryFiles(t, opts.NoWinRE))
	}
	unix.Sync()
	return d
}

// windowsLayout is the sfdisk script of the disk: fixed GUIDs, so that two
// disks made alike have the same table.
func windowsLayout(opts WindowsDiskOptions) string {
	s := "label: gpt\nlabel-id: 5E1F0C2A-7B3D-4C8E-9A6F-1D2B3C4D5E6F\nfirst-lba: 2048\n" +
		"size=40MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0B1E7A3C-0000-4000-8000-000000000001, name=\"EFI system partition\"\n" +
		"size=16MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, uuid=0B1E7A3C-0000-4000-8000-000000000002, name=\"Microsoft reserved partition\"\n" +
		fmt.Sprintf("size=%dKiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=0B1E7A3C-0000-4000-8000-000000000003, name=\"Basic data partition\"\n", opts.WindowsSize>>10)
	if !opts.NoRecovery {
		s += "type=DE94BBA4-06D1-4D40-A16A-BFD50179D6AC, uuid=0B1E7A3C-0000-4000-8000-000000000004, name=\"Windows RE tools\", attrs=\"RequiredPartition GUID:63\"\n"
	}
	return s
}

// ReadGPT reads a disk's GPT partitions with sfdisk -J.
func ReadGPT(t testing.TB, path string) map[int]DiskPartition {
	t.Helper()
	var table struct {
		PartitionTable struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
				Type        string
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	out := Run(t, "fdisk", "sfdisk", "-J", path)
	if err := json.Unmarshal([]byte(out), &table); err != nil || table.PartitionTable.Label != "gpt" {
		t.Fatalf("sfdisk -J %s: want a GPT (%v)\n%s", path, err, out)
	}
	parts := map[int]DiskPartition{}
	for _, p := range table.PartitionTable.Partitions {
		n, err := strconv.Atoi(p.Node[strings.LastIndexFunc(p.Node, func(r rune) bool { return r < '0' || r > '9' })+1:])
		if err != nil {
			t.Fatalf("sfdisk -J %s: partition node %q", path, p.Node)
		}
		ss := table.PartitionTable.SectorSize
		parts[n] = DiskPartition{Start: p.Start * ss, Size: p.Size * ss, Type: p.Type}
	}
	return parts
}

// AttachPartition attaches partition n of the image as a loop device of
// its own (--offset, --sizelimit: loop devices here scan no partitions),
// detached when the test ends.
func (d *WindowsDisk) AttachPartition(t testing.TB, n int) *Loop {
	t.Helper()
	p, ok := d.Partitions[n]
	if !ok {
		t.Fatalf("%s has no partition %d", d.Path, n)
	}
	return AttachLoop(t, d.Path, "--offset", strconv.FormatInt(p.Start, 10), "--sizelimit", strconv.FormatInt(p.Size, 10))
}

// PartitionSHA256 is the hex SHA-256 of partition n's bytes in the image.
func (d *WindowsDisk) PartitionSHA256(t testing.TB, n int) string {
	t.Helper()
	return RangeSHA256(t, d.Path, d.Partitions[n].Start, d.Partitions[n].Size)
}

// formatEFI makes the FAT32 EFI system partition and puts a boot manager on it.
func (d *WindowsDisk) formatEFI(t testing.TB) {
	t.Helper()
	p := d.Partitions[EFIPartition]
	Run(t, "dosfstools", "mkfs.vfat", "-F", "32", "-s", "1", "-S", "512", "-i", "1EF1B007", "-n", "SYSTEM",
		"--offset", strconv.FormatInt(p.Start/512, 10), d.Path, strconv.FormatInt(p.Size/1024, 10))
	img := d.Path + "@@" + strconv.FormatInt(p.Start, 10)
	src := filepath.Join(t.TempDir(), "bootmgfw.efi")
	if err := os.WriteFile(src, []byte("MZ boot manager of the test disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, "mtools", "mmd", "-i", img, "::EFI", "::EFI/Microsoft", "::EFI/Microsoft/Boot", "::EFI/Boot")
	Run(t, "mtools", "mcopy", "-i", img, src, "::"+EFIBootManager)
	Run(t, "mtools", "mcopy", "-i", img, src, "::EFI/Boot/bootx64.efi")
}

// formatNTFS makes an NTFS file system on partition n, with the start and
// geometry Windows needs to boot from it (mkntfs cannot find them on a
// loop device), and puts files on it with wimlib-imagex apply.
func (d *WindowsDisk) formatNTFS(t testing.TB, n int, label string, files map[string]string) {
	t.Helper()
	l := d.AttachPartition(t, n)
	defer l.Detach(t)
	Run(t, "ntfs-3g", "mkntfs", "-Q", "-q", "-F", "-L", label,
		"-p", strconv.FormatInt(d.Partitions[n].Start/512, 10), "-H", "255", "-S", "63", l.Path)
	Run(t, "wimtools", "wimlib-imagex", "apply", CaptureWIM(t, files, label), "1", l.Path)
}

// CaptureWIM writes files (slash-separated path → content) into a folder
// and captures it with wimlib-imagex capture as image 1, named name, of a
// new WIM file whose path it returns: the image a reset applies, or a
// volume's contents.
func CaptureWIM(t testing.TB, files map[string]string, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	WriteTree(t, src, files)
	wim := filepath.Join(dir, "image.wim")
	Run(t, "wimtools", "wimlib-imagex", "capture", src, wim, name, "--compress=none", "--no-acls")
	return wim
}

// WriteTree writes files (slash-separated path → content) under dir.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
