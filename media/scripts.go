package media

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"github.com/imagefarm/imagefarm/media/fatdisk"
)

// The scripts on the key. The partitioning follows Microsoft's
// CreatePartitions-UEFI.txt and ApplyImage.bat samples (and HP's
// ReCreatePartitions.txt): EFI system 260 MiB FAT32 (large enough for 4Kn
// drives), MSR 16 MiB, Windows NTFS, and a 1 GiB Recovery partition at the
// end with the Windows RE type id and the attributes that hide it.
const (
	deployName     = "deploy.cmd"
	partitionsName = "CreatePartitions-UEFI.txt"
)

var partitionsScript = `rem == CreatePartitions-UEFI.txt, written by imagefarm media build ==
rem Partitions disk 0 of a UEFI/GPT PC for Windows. IT ERASES DISK 0.
select disk 0
clean
convert gpt
rem == 1. System partition (EFI) ==
create partition efi size=260
format quick fs=fat32 label="System"
assign letter="S"
rem == 2. Microsoft Reserved (MSR) partition ==
create partition msr size=16
rem == 3. Windows partition, leaving 1 GiB for the Recovery partition ==
create partition primary
shrink minimum=1024
format quick fs=ntfs label="Windows"
assign letter="W"
rem == 4. Recovery partition: Windows RE type, hidden and required ==
create partition primary
format quick fs=ntfs label="Recovery"
assign letter="R"
set id="de94bba4-06d1-4d40-a16a-bfd50179d6ac"
gpt attributes=0x8000000000000001
list volume
exit
`

var deployTemplate = template.Must(template.New(deployName).Parse(`@echo off
rem == deploy.cmd, written by imagefarm media build ==
rem Model: {{.Model}}
{{- range .Inputs}}
rem {{.}}
{{- end}}
rem Run from this key in WinPE: deploy.cmd [IMAGE-INDEX]. IT ERASES DISK 0.
{{- range .Images}}
rem   image {{.}}
{{- end}}
setlocal
set MEDIA=%~dp0
set INDEX={{.Index}}
if not "%~1"=="" set INDEX=%~1

echo == Partitioning disk 0 for UEFI/GPT
diskpart /s "%MEDIA%` + partitionsName + `" || goto :fail

echo == Applying image %INDEX% to W:
{{if .Split -}}
dism /Apply-Image /ImageFile:"%MEDIA%images\install.swm" /SWMFile:"%MEDIA%images\install*.swm" /Index:%INDEX% /ApplyDir:W:\ || goto :fail
{{- else -}}
dism /Apply-Image /ImageFile:"%MEDIA%images\install.wim" /Index:%INDEX% /ApplyDir:W:\ || goto :fail
{{- end}}
{{- if .DriverFolder}}

echo == Adding drivers
dism /Image:W:\ /Add-Driver /Driver:"%MEDIA%drivers\{{.DriverFolder}}" /Recurse || goto :fail
{{- end}}
{{- range .PPKGs}}

echo == Adding provisioning package {{.}}
dism /Image:W:\ /Add-ProvisioningPackage /PackagePath:"%MEDIA%ppkg\{{.}}" || goto :fail
{{- end}}

echo == Making the disk boot Windows by UEFI
W:\Windows\System32\bcdboot W:\Windows /s S: /f UEFI || goto :fail

if exist W:\Windows\System32\Recovery\Winre.wim (
  echo == Moving Windows RE to the Recovery partition
  md R:\Recovery\WindowsRE
  xcopy /h W:\Windows\System32\Recovery\Winre.wim R:\Recovery\WindowsRE\ || goto :fail
  W:\Windows\System32\Reagentc /Setreimage /Path R:\Recovery\WindowsRE /Target W:\Windows || goto :fail
)
echo == Done: remove the key and restart.
exit /b 0

:fail
echo == FAILED with code %errorlevel%: the device is not ready, see above.
exit /b 1
`))

// writeScripts returns deploy.cmd and the diskpart script, with CRLF line
// ends as cmd.exe and diskpart expect.
func writeScripts(b *builder) ([]fatdisk.File, error) {
	data := struct {
		Model, DriverFolder string
		Inputs, Images      []string
		Index               int
		Split               bool
		PPKGs               []string
	}{Model: batchSafe(b.spec.Model), Index: 1, Split: b.wimParts > 1, PPKGs: b.ppkgs}
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
