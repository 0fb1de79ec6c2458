package gpt_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/storage/gpt"
)

// TestSelectionRanges checks the byte ranges a selection writes and keeps
// on a four-partition disk of 128 sectors.
func TestSelectionRanges(t *testing.T) {
	disk := buildGPT(512, 128, []part{{3, 20, gpt.TypeEFISystem}, {21, 30, gpt.TypeMSR}, {31, 100, gpt.TypeBasicData}, {101, 120, gpt.TypeWindowsRecovery}})
	tab := read(t, disk)
	size := int64(len(disk))
	r := func(a, b int64) gpt.Range { return gpt.Range{Start: a * 512, End: b * 512} }
	for _, tc := range []struct {
		sel  gpt.Selection
		want []gpt.Range
		kept []string
	}{
		{gpt.Selection{}, []gpt.Range{{Start: 0, End: size}}, nil},
		{gpt.Selection{Restore: []int{3}}, []gpt.Range{r(31, 101)},
			[]string{"partition 1 (EFI system)", "partition 2 (Microsoft reserved)", "partition 4 (Windows recovery)", "primary partition table", "backup partition table"}},
		{gpt.Selection{Restore: []int{4, 1}}, []gpt.Range{r(3, 21), r(101, 121)},
			[]string{"partition 2 (Microsoft reserved)", "partition 3 (Microsoft basic data)", "primary partition table", "backup partition table"}},
		{gpt.Selection{Keep: []int{4}}, []gpt.Range{r(0, 101), r(121, 128)}, []string{"partition 4 (Windows recovery)"}},
		{gpt.Selection{Keep: []int{2, 4}}, []gpt.Range{r(0, 21), r(31, 101), r(121, 128)}, []string{"partition 2 (Microsoft reserved)", "partition 4 (Windows recovery)"}},
	} {
		got, err := tc.sel.Ranges(tab, size)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v.Ranges = %v, %v; want %v", tc.sel, got, err, tc.want)
		}
		var names []string
		for _, k := range tc.sel.Kept(tab) {
			names = append(names, k.Name)
		}
		if !slices.Equal(names, tc.kept) {
			t.Errorf("%v.Kept = %q, want %q", tc.sel, names, tc.kept)
		}
	}
	if k := (gpt.Selection{Restore: []int{3}}).Kept(tab); k[3].Range != r(0, 3) || k[4].Range != r(126, 128) {
		t.Errorf("Kept tables = %v and %v, want LBA 0-2 and 126-127", k[3].Range, k[4].Range)
	}
	for _, tc := range []struct {
		sel  gpt.Selection
		want string
	}{
		{gpt.Selection{Restore: []int{5}}, "the image has no partition 5 (it has 1 EFI system, 2 Microsoft reserved, 3 Microsoft basic data, 4 Windows recovery)"},
		{gpt.Selection{Keep: []int{0}}, "partition 0: partitions are numbered from 1"},
		{gpt.Selection{Keep: []int{1025}}, "partition 1025: partitions are numbered from 1"},
		{gpt.Selection{Keep: []int{2, 2}}, "partition 2 is named twice"},
		{gpt.Selection{Restore: []int{2}, Keep: []int{3}}, "--partition and --keep exclude each other"},
	} {
		if _, err := tc.sel.Ranges(tab, size); !errors.Is(err, gpt.ErrBadSelection) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v.Ranges = %v, want ErrBadSelection with %q", tc.sel, err, tc.want)
		}
	}
}
