package main

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/media"
)

// standInWimboot writes the headers of an x86-64 EFI application, as
// wimboot is, and nothing else: it passes the check of --wimboot but
// boots nothing.
func standInWimboot(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	dos := make([]byte, 64)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 64)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	opt := pe.OptionalHeader64{Magic: 0x20b, Subsystem: pe.IMAGE_SUBSYSTEM_EFI_APPLICATION, NumberOfRvaAndSizes: 16}
	binary.Write(&b, binary.LittleEndian, pe.FileHeader{Machine: pe.IMAGE_FILE_MACHINE_AMD64, SizeOfOptionalHeader: uint16(binary.Size(opt))})
	binary.Write(&b, binary.LittleEndian, opt)
	p := filepath.Join(t.TempDir(), "wimboot")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNetbootServeWinPE: netboot serve --winpe --winpe-wim --wimboot gives
// a --deploy-winpe machine an iPXE script that loads wimboot and hands it
// BCD, boot.sdi and boot.wim from the WinPE bundle (found whatever their
// case), startnet.cmd, and the deploy scripts media build writes for the
// same WIM; every URL of the script serves its file's bytes. Bad flags are
// refused naming what to do.
func TestNetbootServeWinPE(t *testing.T) {
	store := "--store=file://" + t.TempDir()
	dir := t.TempDir()
	files := map[string][]byte{"winpe/EFI/Boot/bootx64.efi": []byte("MZ efi"), "winpe/Boot/bcd": []byte("BCD store"),
		"winpe/Boot/boot.sdi": bytes.Repeat([]byte("sdi"), 1000), "tree/Windows/System32/kernel.dll": []byte("kernel")}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wim := filepath.Join(dir, "install.wim")
	wimlib(t, "capture", filepath.Join(dir, "tree"), wim, "Windows 11 Pro")
	bootWIM, _ := os.ReadFile(wim)
	os.MkdirAll(filepath.Join(dir, "winpe/sources"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "winpe/sources/boot.wim"), bootWIM, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, store, "image", "push", "winpe:1", filepath.Join(dir, "winpe"), "--kind", "winpe")
	mustRun(t, store, "image", "push", "win11:1", wim, "--kind", "wim")
	wimboot := standInWimboot(t)
	serve, env := netbootArgs(t)
	base := append(serve, store, "--allow-unsigned", "--env-cache", filepath.Join(t.TempDir(), "cache"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--deploy-winpe", "52:54:00:12:34:56"}, "start netboot serve with --wimboot FILE and --winpe NAME:VERSION"},
		{[]string{"--winpe", "winpe:1", "--winpe-wim", "win11:1"}, "download it from https://ipxe.org/wimboot and give --wimboot FILE"},
		{[]string{"--winpe", "winpe:1", "--winpe-wim", "win11:1", "--wimboot", wim}, "no PE header"},
		{[]string{"--winpe", "winpe:1", "--winpe-wim", "win11:1", "--wimboot", filepath.Join(dir, "none")}, "none"},
		{[]string{"--winpe", "winpe:1", "--wimboot", wimboot}, "--winpe needs --winpe-wim NAME:VERSION"},
		{[]string{"--winpe", "win11:1", "--winpe-wim", "win11:1", "--wimboot", wimboot}, "is a wim image, want winpe"},
		{[]string{"--wimboot", wimboot}, "give the WinPE with --winpe NAME:VERSION"},
		{[]string{"--winpe", "winpe:1", "--winpe-wim", "win11:1", "--wimboot", wimboot, "--deploy-winpe", "52:54:00:12:34:56", "--deploy", "52:54:00:12:34:56", env[0], env[1], env[2], env[3]}, "the MAC is given twice"},
	} {
		if out, err := run(t, append(append([]string{}, base...), tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("netboot serve %q = %v (%s), want an error containing %q", tc.args, err, out, tc.want)
		}
	}
	httpPort := freeTCPPort(t)
	p := startCLI(t, append(base, "--winpe", "winpe:1", "--winpe-wim", "win11:1", "--wimboot", wimboot, "--deploy-winpe", "52:54:00:12:34:56",
		"--http-port", fmt.Sprint(httpPort), "--tftp-port", fmt.Sprint(freeUDPPort(t)))...)
	p.waitFor(t, "boot service ready")
	get := func(url string) []byte {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
		}
		return b
	}
	script := string(get(fmt.Sprintf("http://127.0.0.1:%d/plan.ipxe?mac=52-54-00-12-34-56&arch=bios", httpPort)))
	urls := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(?:kernel|initrd --name (\S+)) (http://\S+/winpe/[0-9a-f]+/(\S+)) \|\| goto local$`).FindAllStringSubmatch(script, -1) {
		urls[m[3]] = m[2]
		if m[1] != "" && m[1] != m[3] {
			t.Errorf("initrd named %s from %s", m[1], m[2])
		}
	}
	wimbootData, _ := os.ReadFile(wimboot)
	want := map[string]func([]byte) bool{
		"wimboot":      func(b []byte) bool { return bytes.Equal(b, wimbootData) },
		"BCD":          func(b []byte) bool { return bytes.Equal(b, files["winpe/Boot/bcd"]) },
		"boot.sdi":     func(b []byte) bool { return bytes.Equal(b, files["winpe/Boot/boot.sdi"]) },
		"boot.wim":     func(b []byte) bool { return bytes.Equal(b, bootWIM) },
		"startnet.cmd": func(b []byte) bool { return string(b) == media.Startnet },
		"deploy.cmd": func(b []byte) bool {
			return bytes.Contains(b, []byte("rem == deploy.cmd, written by imagefarm media build ==\r\n")) && bytes.Contains(b, []byte("win11:1@sha256:"))
		},
		"CreatePartitions-UEFI.txt": func(b []byte) bool { return bytes.Contains(b, []byte("\r\n")) },
	}
	if len(urls) != len(want) {
		t.Fatalf("the WinPE script loads %v, want %d files:\n%s", urls, len(want), script)
	}
	for name, ok := range want {
		if u, found := urls[name]; !found || !ok(get(u)) {
			t.Errorf("%s (%s): not served, or not its bytes", name, u)
		}
	}
}
