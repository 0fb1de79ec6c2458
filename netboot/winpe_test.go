package netboot

import (
	"bytes"
	"crypto/rand"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// standInWimboot writes a stand-in for wimboot: the headers of an x86-64
// PE for subsystem sub and nothing else. It cannot boot anything; it has
// the header CheckWimboot reads (a real wimboot is an EFI application,
// subsystem 10).
func standInWimboot(t testing.TB, sub uint16) string {
	t.Helper()
	var b bytes.Buffer
	dos := make([]byte, 64)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 64) // e_lfanew: the PE header follows
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	opt := pe.OptionalHeader64{Magic: 0x20b, Subsystem: sub, NumberOfRvaAndSizes: 16, SectionAlignment: 4096, FileAlignment: 512}
	binary.Write(&b, binary.LittleEndian, pe.FileHeader{Machine: pe.IMAGE_FILE_MACHINE_AMD64, SizeOfOptionalHeader: uint16(binary.Size(opt)),
		Characteristics: pe.IMAGE_FILE_EXECUTABLE_IMAGE})
	binary.Write(&b, binary.LittleEndian, opt)
	p := filepath.Join(t.TempDir(), fmt.Sprintf("wimboot-%d", sub))
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testWinPE writes a WinPE's files (random bytes) and a stand-in wimboot.
func testWinPE(t testing.TB) (*WinPE, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	w := &WinPE{ID: "0123abcd", Wimboot: standInWimboot(t, pe.IMAGE_SUBSYSTEM_EFI_APPLICATION)}
	want := map[string][]byte{}
	for i, name := range []string{"BCD", "boot.sdi", "boot.wim", "startnet.cmd", "deploy.cmd", "CreatePartitions-UEFI.txt"} {
		data := make([]byte, 1000*(i+1)+7)
		rand.Read(data)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		w.Files, want[name] = append(w.Files, WinPEFile{Name: name, Path: p}), data
	}
	want["wimboot"], _ = os.ReadFile(w.Wimboot)
	return w, want
}

// TestWinPEScriptAndFiles: a machine planned for WinPE gets an iPXE
// script that loads wimboot and hands it BCD, boot.sdi, boot.wim and the
// deploy scripts by name, from URLs that name the WinPE's version; each
// URL serves exactly that file's bytes. Another version or name is
// refused.
func TestWinPEScriptAndFiles(t *testing.T) {
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	w, want := testWinPE(t)
	cfg.WinPE = w
	cfg.Planner = Static{WinPE: map[string]bool{"52:54:00:12:34:56": true}}
	start(t, cfg)
	code, body := httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-12-34-56&arch=uefi")
	base := fmt.Sprintf("http://127.0.0.1:%d/winpe/0123abcd/", cfg.HTTPPort)
	golden := "#!ipxe\necho imagefarm: listed by --deploy-winpe\nkernel " + base + "wimboot || goto local\n" +
		"initrd --name BCD " + base + "BCD || goto local\ninitrd --name boot.sdi " + base + "boot.sdi || goto local\n" +
		"initrd --name boot.wim " + base + "boot.wim || goto local\ninitrd --name startnet.cmd " + base + "startnet.cmd || goto local\n" +
		"initrd --name deploy.cmd " + base + "deploy.cmd || goto local\n" +
		"initrd --name CreatePartitions-UEFI.txt " + base + "CreatePartitions-UEFI.txt || goto local\n" +
		"boot || goto local\n:local\necho imagefarm: WinPE did not boot, booting the local disk\nexit 1\n"
	if code != http.StatusOK || body != golden {
		t.Errorf("WinPE script = %d\n%s\nwant\n%s", code, body, golden)
	}
	for name, data := range want {
		if code, got := httpGet(t, cfg, "/winpe/0123abcd/"+name); code != http.StatusOK || !bytes.Equal([]byte(got), data) {
			t.Errorf("GET /winpe/0123abcd/%s = %d, %d bytes; want 200 and its %d bytes", name, code, len(got), len(data))
		}
	}
	for path, why := range map[string]string{"/winpe/ffff/boot.wim": "netboot again", "/winpe/0123abcd/install.wim": "not a boot file",
		"/winpe/0123abcd/..%2f..%2fetc%2fpasswd": "not a boot file"} {
		if code, got := httpGet(t, cfg, path); code != http.StatusNotFound || !strings.Contains(got, why) {
			t.Errorf("GET %s = %d %q, want 404 saying %q", path, code, got, why)
		}
	}
	if code, body := httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-00-00-01&arch=bios"); code != http.StatusOK || strings.Contains(body, "wimboot") {
		t.Errorf("an unlisted machine's script:\n%s\nwant its local disk", body)
	}
}

// TestWinPERefusals: a wimboot that is no wimboot (missing, a script, a PE
// for another subsystem) and a WinPE without files are refused by New,
// naming the file and where wimboot comes from; a plan asking for WinPE
// when the service has none, or for a machine on the signed chain (GRUB
// cannot run wimboot), boots the local disk and the log says what to do.
func TestWinPERefusals(t *testing.T) {
	script := filepath.Join(t.TempDir(), "wimboot.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	for name, tc := range map[string]struct {
		wimboot string
		is      error
		want    string
	}{
		"missing":   {filepath.Join(t.TempDir(), "wimboot"), os.ErrNotExist, "wimboot"},
		"script":    {script, ErrNotWimboot, "no PE header"},
		"a console": {standInWimboot(t, pe.IMAGE_SUBSYSTEM_WINDOWS_CUI), ErrNotWimboot, "not an x86 EFI application"},
	} {
		if err := CheckWimboot(tc.wimboot); !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckWimboot = %v, want %v saying %q", name, err, tc.is, tc.want)
		}
		var log logBuffer
		cfg := loopbackConfig(t, newBootFiles(t).files, &log)
		cfg.WinPE, _ = testWinPE(t)
		cfg.WinPE.Wimboot = tc.wimboot
		if _, err := New(cfg); !errors.Is(err, tc.is) {
			t.Errorf("%s: New = %v, want %v", name, err, tc.is)
		}
	}
	var log logBuffer
	cfg := loopbackConfig(t, newBootFiles(t).files, &log)
	cfg.WinPE, _ = testWinPE(t)
	cfg.WinPE.Files = nil
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "wimboot needs at least boot.wim") {
		t.Errorf("New(WinPE without files) = %v, want refused", err)
	}

	cfg = loopbackConfig(t, newBootFiles(t).files, &log)
	cfg.Planner = Static{WinPE: map[string]bool{"52:54:00:12:34:56": true}}
	start(t, cfg)
	if _, body := httpGet(t, cfg, "/plan.ipxe?mac=52-54-00-12-34-56&arch=bios"); strings.Contains(body, "kernel ") ||
		!strings.Contains(body, "start netboot serve with --wimboot FILE") || !strings.Contains(body, "sanboot") {
		t.Errorf("WinPE plan without WinPE: script\n%s\nwant the local disk, saying --wimboot", body)
	}
	if !strings.Contains(log.String(), "start netboot serve with --wimboot FILE and --winpe NAME:VERSION") {
		t.Errorf("the log does not say what to do:\n%s", log.String())
	}

	cfg = loopbackConfig(t, newBootFiles(t).files, &log)
	cfg.WinPE, _ = testWinPE(t)
	cfg.Planner = Static{WinPE: map[string]bool{"52:54:00:12:34:56": true}}
	start(t, cfg)
	if grub, _, err := tftpGet(t, cfg, "grub/imagefarm/52:54:00:12:34:56.cfg"); err != nil || strings.Contains(string(grub), "linux") ||
		!strings.Contains(string(grub), "WinPE needs the iPXE chain") {
		t.Errorf("WinPE plan on the signed chain: GRUB config %q, %v; want the local disk, saying WinPE needs iPXE", grub, err)
	}
}
