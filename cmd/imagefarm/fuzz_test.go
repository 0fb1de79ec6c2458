package main

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// FuzzSubmitSelector feeds arbitrary selector flags to job submit: it must
// refuse them with an error that names a flag, or build a standing order
// whose selector is exactly what the flags say. Names that break their
// internal/ident rule are refused by the CLI as the controller would.
func FuzzSubmitSelector(f *testing.F) {
	f.Add(uint32(5), "usb-bench", "site=lab", "n1", "16GB")
	f.Add(uint32(0), "", "nokey", "", "lots")
	f.Add(uint32(1<<31), "p", "=v", "../x", "99999999999999999999EB")
	f.Add(uint32(1), "p\x00", `"a=b,c=d"`, "n1", "1,5 GiB")
	f.Add(uint32(1), "", "a=b=c", "", "-1")
	f.Fuzz(func(t *testing.T, count uint32, pool, label, node, minSize string) {
		var sf submitFlags
		cmd := &cobra.Command{}
		sf.addFlags(cmd)
		args := []string{"--count=" + strconv.FormatUint(uint64(count), 10), "--pool=" + pool, "--label=" + label,
			"--node=" + node, "--min-size=" + minSize}
		err := cmd.ParseFlags(args)
		if err != nil {
			if !strings.Contains(err.Error(), "--label") {
				t.Fatalf("job submit %q = %v, want an error about --label, the one flag that can be malformed", args, err)
			}
			return
		}
		req, err := sf.request(cmd, "img:1")
		if errors.Is(err, ident.ErrInvalid) {
			// Refused as the controller would: the value breaks its rule.
			if bad := cmp.Or(ident.Pool(pool), ident.Labels(sf.labels), ident.NodeID(node)); bad == nil ||
				!strings.HasPrefix(err.Error(), "--pool: ") && !strings.HasPrefix(err.Error(), "--label: ") && !strings.HasPrefix(err.Error(), "--node: ") {
				t.Fatalf("job submit %q = %v, want an error naming the flag whose value breaks its rule", args, err)
			}
			return
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--min-size ") {
				t.Fatalf("job submit %q = %v, want an error about --min-size, the one value left to parse", args, err)
			}
			return
		}
		so := req.GetTargets().GetStandingOrder()
		sel := so.GetSelector()
		want, _ := humanize.ParseBytes(minSize)
		if so.GetCount() != count || sel.GetPool() != pool || !slices.Equal(sel.GetNodeIds(), []string{node}) ||
			sel.GetMinSizeBytes() != want || sel.Removable != nil {
			t.Fatalf("job submit %q built %v", args, so)
		}
		// A label with quotes or commas is read as CSV; any other is KEY=VALUE.
		if k, v, _ := strings.Cut(label, "="); !strings.ContainsAny(label, "\",\r\n") &&
			(len(sel.GetLabels()) != 1 || sel.GetLabels()[k] != v) {
			t.Fatalf("job submit %q built labels %v, want %q=%q", args, sel.GetLabels(), k, v)
		}
	})
}
