package wim_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagefarm/imagefarm/storage/wim"
)

// wimlibArch maps the architecture names of wimlib-imagex info to Read's.
var wimlibArch = map[string]string{
	"x86": "x86", "ARM": "arm", "ia64": "ia64", "x86_64": "amd64", "ARM64": "arm64",
}

// wimlibInfo runs wimlib-imagex info on path and returns what it reports,
// in the shape of wim.Info.
func wimlibInfo(t testing.TB, path string) *wim.Info {
	t.Helper()
	out := wimlib(t, "info", path)
	head, images, ok := strings.Cut(out, "Available Images:")
	if !ok {
		t.Fatalf("wimlib-imagex info %s printed no images:\n%s", path, out)
	}
	f := fields(head)
	part, parts, _ := strings.Cut(f["Part Number"], "/")
	info := &wim.Info{
		Version:     uint32(num(t, f["Version"])),
		Compression: strings.ToLower(f["Compression"]),
		ChunkSize:   uint32(num(t, strings.TrimSuffix(f["Chunk Size"], " bytes"))),
		GUID:        strings.TrimPrefix(f["GUID"], "0x"),
		Part:        int(num(t, part)),
		TotalParts:  int(num(t, parts)),
		ImageCount:  int(num(t, f["Image Count"])),
		BootIndex:   int(num(t, f["Boot Index"])),
		TotalBytes:  num(t, strings.TrimSuffix(f["Size"], " bytes")),
	}
	for block := range strings.SplitSeq(images, "\n\n") {
		if f := fields(block); f["Index"] != "" {
			info.Images = append(info.Images, wimlibImage(t, f))
		}
	}
	return info
}

// wimlibImage converts one image of wimlib-imagex info.
func wimlibImage(t testing.TB, f map[string]string) wim.Image {
	t.Helper()
	img := wim.Image{
		Index:            int(num(t, f["Index"])),
		Name:             f["Name"],
		Description:      f["Description"],
		DisplayName:      f["Display Name"],
		Flags:            f["Flags"],
		Edition:          f["Edition ID"],
		Arch:             wimlibArch[f["Architecture"]],
		ProductName:      f["Product Name"],
		InstallationType: f["Installation Type"],
		DefaultLanguage:  f["Default Language"],
		DirCount:         num(t, f["Directory Count"]),
		FileCount:        num(t, f["File Count"]),
		TotalBytes:       num(t, f["Total Bytes"]),
	}
	if langs := f["Languages"]; langs != "" {
		img.Languages = strings.Fields(langs)
	}
	if major, ok := f["Major Version"]; ok {
		img.Build = strings.Join([]string{major, f["Minor Version"], f["Build"], f["Service Pack Build"]}, ".")
	}
	created, err := time.Parse("Mon Jan _2 15:04:05 2006 MST", f["Creation Time"])
	if err != nil {
		t.Fatalf("wimlib-imagex info creation time: %v", err)
	}
	img.CreatedAt = created
	return img
}

// fields splits "Key:   value" lines into a map.
func fields(s string) map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// num parses a decimal number that wimlib-imagex info printed.
func num(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("wimlib-imagex info printed %q, want a number", s)
	}
	return n
}
