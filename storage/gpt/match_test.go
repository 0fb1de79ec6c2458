package gpt_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// TestMatch checks that Match accepts the same partitions and names the
// first difference otherwise.
func TestMatch(t *testing.T) {
	image := read(t, buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 100, gpt.TypeBasicData}, {101, 120, gpt.TypeWindowsRecovery}}))
	tests := []struct {
		name    string
		drive   []byte
		numbers []int
		want    string // "" for a match
	}{
		{"same", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 100, gpt.TypeBasicData}, {101, 120, gpt.TypeWindowsRecovery}}), []int{1, 2, 3}, ""},
		{"other partitions differ", buildGPT(512, 256, []part{{3, 20, gpt.TypeEFISystem}, {21, 200, gpt.TypeBasicData}, {101 + 100, 120 + 100, gpt.TypeWindowsRecovery}}), []int{1}, ""},
		{"start", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 100, gpt.TypeBasicData}, {102, 121, gpt.TypeWindowsRecovery}}), []int{1, 3}, "partition 3: image starts at sector 101, drive at 102"},
		{"size", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 100, gpt.TypeBasicData}, {101, 119, gpt.TypeWindowsRecovery}}), []int{3}, "partition 3: image has 20 sectors, drive 19"},
		{"type", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 100, gpt.TypeLinux}}), []int{2}, "partition 2: image has type Microsoft basic data, drive Linux filesystem"},
		{"missing on drive", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}}), []int{2}, "partition 2: the drive has no such partition"},
		{"missing in image", buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}}), []int{4}, "partition 4: the image has no such partition"},
		{"sector size", buildGPT(4096, 128, []part{{3, 20, gpt.TypeEFISystem}}), []int{1}, "image has 512-byte sectors, drive 4096-byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gpt.Match(image, read(t, tt.drive), tt.numbers)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Match = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, gpt.ErrMismatch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Match = %v, want ErrMismatch with %q", err, tt.want)
			}
		})
	}
}

func read(t *testing.T, disk []byte) *gpt.Table {
	t.Helper()
	tab, err := gpt.Read(bytesReader(disk), int64(len(disk)))
	if err != nil {
		t.Fatalf("Read(buildGPT) = %v", err)
	}
	return tab
}
