package netboot

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
)

// The scripts and GRUB configs the service writes. Every value put in one
// is a word that checkWord passes (or a reason that checkReason passes), so
// nothing a client sends or a planner returns can end a line, open a
// ${...} expansion or add a command.

// identifyScript is the first script iPXE fetches: it asks again with the
// machine's SMBIOS fields, which only iPXE can read, and boots the local
// disk if the service cannot be reached. The plan is fetched, then run:
// a plan that ends in "exit 1" (the local disk, on UEFI) fails imgexec,
// which ends this script with that failure too, without the message of
// an unreachable service.
//
// On UEFI, booting the local disk is "exit 1": iPXE returns an error to
// the firmware, which goes on to the next entry of its boot order. Had it
// returned success ("exit", status 0), the firmware would stop there and
// show its boot menu (UEFI 2.x, 3.1.1: OVMF does), and a laptop with no
// work would wait at that menu instead of booting its disk.
var identifyScript = template.Must(template.New("identify").Funcs(funcs).Parse(`#!ipxe
echo imagefarm: {{word .MAC}} ({{word .Arch}}) asks what to boot
imgfetch --name plan {{word .Base}}/plan.ipxe?mac={{word .MAC}}&arch={{word .Arch}}&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}&product=${product:uristring} || goto local
imgexec plan
{{template "local" .}}
:local
echo imagefarm: the boot service did not answer, booting the local disk
{{template "local" .}}
{{define "local"}}{{if .EFI}}exit 1{{else}}sanboot --no-describe --drive 0x80 || exit{{end}}{{end}}`))

// planScript is a machine's script for one boot: its plan.
var planScript = template.Must(identifyScript.New("plan").Parse(`#!ipxe
echo imagefarm: {{reason .Reason}}
{{- if .Deploy}}
kernel {{word .Base}}/files/{{word .Env}}/vmlinuz initrd=initramfs{{range .Args}} {{word .}}{{end}} || goto local
initrd --name initramfs {{word .Base}}/files/{{word .Env}}/initramfs || goto local
boot || goto local
:local
echo imagefarm: the deploy environment did not boot, booting the local disk
{{- end}}
{{- if .WinPE}}
kernel {{word .Base}}/winpe/{{word .WinPEID}}/wimboot || goto local
{{- range .WinPEFiles}}
initrd --name {{word .}} {{word $.Base}}/winpe/{{word $.WinPEID}}/{{word .}} || goto local
{{- end}}
boot || goto local
:local
echo imagefarm: WinPE did not boot, booting the local disk
{{- end}}
{{template "local" .}}
`))

// grubMain is grub/grub.cfg: it loads the config of the machine GRUB runs
// on, by the MAC GRUB booted from.
const grubMain = `set timeout=0
configfile /grub/imagefarm/${net_default_mac}.cfg
echo 'imagefarm: the boot service did not answer, booting the local disk'
exit
`

// grubPlan is a machine's GRUB config for one boot: its plan. GRUB's exit
// returns to the firmware, which boots the next entry: the local disk.
var grubPlan = template.Must(template.New("grub").Funcs(funcs).Parse(`set timeout=0
echo 'imagefarm: {{reason .Reason}}'
{{- if .Deploy}}
linux /env/{{word .Env}}/vmlinuz{{range .Args}} {{word .}}{{end}}
initrd /env/{{word .Env}}/initramfs
boot
echo 'imagefarm: the deploy environment did not boot, booting the local disk'
{{- end}}
exit
`))

var funcs = template.FuncMap{"word": checkWord, "reason": func(s string) (string, error) { return s, checkReason(s) }}

// scriptData is what the templates are given.
type scriptData struct {
	Base   string // http://HOST:PORT, no trailing '/'
	MAC    string // 52-54-00-12-34-56
	Arch   string
	EFI    bool
	Deploy bool
	Env    string // the deploy environment's id (DeployEnv.ID)
	// WinPE boots WinPE through wimboot: WinPEID names the version,
	// WinPEFiles the files iPXE hands wimboot, in order.
	WinPE      bool
	WinPEID    string
	WinPEFiles []string
	Args       []string
	Reason     string
}

// checkWord passes s if it is a word no script or config reads as syntax:
// URL and kernel-argument characters, without '$', quotes, spaces, '#',
// ';', '|', '\' or braces. '&' passes: iPXE reads only "&&" as an
// operator, and only as a word of its own.
func checkWord(s string) (string, error) {
	const allowed = "._:/,+@=-?&%~"
	if s == "" {
		return "", fmt.Errorf("empty word in a boot script")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(allowed, c)) {
			return "", fmt.Errorf("%q cannot go in a boot script: it has %q", s, c)
		}
	}
	if strings.Contains(s, "&&") {
		return "", fmt.Errorf("%q cannot go in a boot script: it has \"&&\"", s)
	}
	return s, nil
}

// render runs t on d.
func render(t *template.Template, d scriptData) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render %s: %w", t.Name(), err)
	}
	return b.Bytes(), nil
}

// hyphenMAC writes mac as iPXE's ${mac:hexhyp} does: 52-54-00-12-34-56.
func hyphenMAC(mac []byte) string {
	parts := make([]string, len(mac))
	for i, b := range mac {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, "-")
}
