package media

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/imagefarm/imagefarm/media/fatdisk"
)

// The scripts on the key, in scripts/ to be read as they are. The
// partitioning follows Microsoft's CreatePartitions-UEFI.txt and
// ApplyImage.bat samples (and HP's ReCreatePartitions.txt): EFI system 260
// MiB FAT32 (large enough for 4Kn drives), MSR 16 MiB, Windows NTFS, and a
// 1 GiB Recovery partition at the end with the Windows RE type id and the
// attributes that hide it. The diskpart script selects no disk: deploy.cmd
// chooses one, checks it with diskpart's "list disk" and "detail disk"
// (refusing a USB, removable or virtual disk, the boot disk and the key's
// own disk), shows it and has the technician confirm it, then runs the
// script after "select disk N" (HP's deploy.cmd, too, is told the disk).
const (
	deployName     = "deploy.cmd"
	partitionsName = "CreatePartitions-UEFI.txt"
)

var (
	//go:embed scripts/CreatePartitions-UEFI.txt
	partitionsScript string
	//go:embed scripts/deploy.cmd.tmpl
	deploySource   string
	deployTemplate = template.Must(template.New(deployName).Parse(deploySource))
)

// writeScripts returns deploy.cmd and the diskpart script, with CRLF line
// ends as cmd.exe and diskpart expect.
func writeScripts(b *builder) ([]fatdisk.File, error) {
	data := struct {
		Model, DriverFolder string
		Inputs, Images      []string
		Index               int
		Split               bool
		PPKGs               []string
		Partitions          string
		Updates             []keyUpdate
		Hooks               map[string][]HookCall
	}{Model: batchSafe(b.spec.Model), Index: 1, Split: b.wimParts > 1, PPKGs: b.ppkgs, Partitions: partitionsName,
		Updates: b.updates, Hooks: hookCalls(b.hooks)}
	if data.Model == "" {
		data.Model = "any (universal inputs only)"
	}
	for _, in := range b.inputs {
		data.Inputs = append(data.Inputs, fmt.Sprintf("%-8s %s@%s", in.Role+":", in.Ref, in.Digest))
		switch {
		case in.Role == "drivers":
			data.DriverFolder = driverFolder(b.spec.Model)
		case in.Role == "wim":
			for _, img := range in.Manifest.WIM.Images {
				switch {
				case b.spec.WIMIndex == 0:
					data.Images = append(data.Images, fmt.Sprintf("%d: %s", img.Index, batchSafe(img.Name)))
				case img.Index == b.spec.WIMIndex:
					data.Images = append(data.Images, fmt.Sprintf("1: %s (image %d of %s)", batchSafe(img.Name), img.Index, in.Ref))
				}
			}
		}
	}
	var deploy bytes.Buffer
	if err := deployTemplate.Execute(&deploy, data); err != nil {
		return nil, fmt.Errorf("media: %s: %w", deployName, err)
	}
	return []fatdisk.File{
		{Path: deployName, Data: crlf(deploy.String())},
		{Path: partitionsName, Data: crlf(partitionsScript)},
	}, nil
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// batchSafe replaces what a batch file or a FAT32 name could take for
// syntax (% ! ^ & | < > " and the like) with "_".
func batchSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" ._+-()#,@", r) {
			return r
		}
		return '_'
	}, strings.TrimRight(s, ". "))
}
