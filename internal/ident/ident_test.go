package ident_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/imagefarm/imagefarm/internal/ident"
)

// TestCheckers feeds each checker the values at and around its rule.
func TestCheckers(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		kind  string
		check func(string) error
		ok    []string
		bad   []string
	}{
		{"image name", ident.ImageName, []string{"win11", "A.b_c+d-e", strings.Repeat("n", 128)},
			[]string{"", strings.Repeat("n", 129), ".a", "-a", "_a", "a..b", "a/b", "a:b", "a@b", "a b", "é", "a\x00"}},
		{"version", ident.Version, []string{"1", "2026.11", "A12+1", strings.Repeat("v", 128)},
			[]string{"", strings.Repeat("v", 129), ".1", "1..2", "1/2", "1:2", "1 2"}},
		{"channel", ident.Channel, []string{"stable"}, []string{"", "a b", ".."}},
		{"image ref", ident.Ref, []string{"a:1", "a@" + digest, strings.Repeat("n", 128) + ":" + strings.Repeat("v", 128)},
			[]string{"", "a", ":1", "a:", "a:b:c", "a@" + digest + "0", strings.Repeat("n", 129) + ":1", strings.Repeat("x", 1<<20)}},
		{"digest", ident.Digest, []string{digest},
			[]string{"", "sha256:", digest[:70], digest + "0", strings.ToUpper(digest), "md5:" + digest[7:], "sha256:" + strings.Repeat("g", 64)}},
		{"chunk id", ident.ChunkID, []string{digest[7:]}, []string{"", digest[8:], strings.ToUpper(digest[7:]), "../" + digest[10:]}},
		{"node id", ident.NodeID, []string{"bench-3", "n_1", "-x", strings.Repeat("n", 64)},
			[]string{"", strings.Repeat("n", 65), "a.b", "a:b", "a*", "a>", "a b", "a/b", "bänk", "a\x00"}},
		{"client name", ident.ClientName, []string{"alice", strings.Repeat("c", 64)}, []string{"", "a.b", "a@b", strings.Repeat("c", 65)}},
		{"drive id", ident.DriveID, []string{"usb-Kingston_DT:1.0", strings.Repeat("d", 255)},
			[]string{"", strings.Repeat("d", 256), "a b", "a/b", "a=b", "✓", "a\t", "a\xff"}},
		{"job id", ident.JobID, []string{"j18f0a", strings.Repeat("j", 128)}, []string{"", "a.b", strings.Repeat("j", 129)}},
		{"task id", ident.TaskID, []string{"j1_t2"}, []string{"", "a.b", "a/1"}},
		{"label key", ident.LabelKey, []string{"site", "rack.3_x-y", strings.Repeat("k", 63)},
			[]string{"", strings.Repeat("k", 64), "a b", "a=b", "a,b", "é", "k\x1b"}},
		{"label value", ident.LabelValue, []string{"", "bench 3, port 12", "é", strings.Repeat("v", 255)},
			[]string{strings.Repeat("v", 256), "\x1b[2J", "a\u202eb", "a\u00a0b", "a\u200bb", "\xff", "a\nb"}},
		{"pool", ident.Pool, []string{"", "usb bench"}, []string{strings.Repeat("p", 256), "a\tb"}},
		{"slot label", ident.SlotLabel, []string{"", "bench 3, port 12"}, []string{strings.Repeat("s", 256), "\x7f"}},
		{"token name", ident.TokenName, []string{"alice", "ci@lab.example", strings.Repeat("t", 64)},
			[]string{"", strings.Repeat("t", 65), "a b", "a/b", "a:b", "é"}},
		{"request id", ident.RequestID, []string{"rq-1", "a:b/c@d", strings.Repeat("r", 128)},
			[]string{"", strings.Repeat("r", 129), "a b", "é", "a\x00"}},
	} {
		for _, s := range tc.ok {
			if err := tc.check(s); err != nil {
				t.Errorf("%s check(%q) = %v, want nil", tc.kind, s, err)
			}
		}
		for _, s := range tc.bad {
			err := tc.check(s)
			var e *ident.Error
			if !errors.Is(err, ident.ErrInvalid) || !errors.As(err, &e) {
				t.Errorf("%s check(%q) = %v, want an *ident.Error", tc.kind, s, err)
				continue
			}
			if msg := err.Error(); len(msg) > 600 || !strings.Contains(msg, e.Kind) || e.Problem == "" || e.Hint == "" {
				t.Errorf("%s check(%q) = %q, want a short message naming the kind, the problem and what to do", tc.kind, s, msg)
			}
		}
	}
}

// TestErrorSaysWhatAndWhy checks one message whole.
func TestErrorSaysWhatAndWhy(t *testing.T) {
	err := ident.NodeID("bench.3")
	want := `node id "bench.3" has '.': use 1 to 64 ASCII letters, digits, '_' or '-'; ` +
		`pick one such as bench-3 (it names a NATS subject, a certificate and KV keys)`
	if err == nil || err.Error() != want {
		t.Errorf("NodeID(bench.3) = %v, want %s", err, want)
	}
}

func TestLabels(t *testing.T) {
	many := map[string]string{}
	for i := range ident.MaxLabels + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string // in the error, "" for none
	}{
		{nil, ""},
		{map[string]string{"site": "lab", "rack": ""}, ""},
		{many, "65 labels, the limit is 64: use at most 64 labels"},
		{map[string]string{"site": "lab", "a b": "x"}, `label key "a b" has ' '`},
		{map[string]string{"site": "\x1b[2J"}, `label "site": label value "\x1b[2J" has '\x1b'`},
	} {
		err := ident.Labels(tc.labels)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ident.ErrInvalid)) {
			t.Errorf("Labels(%q) = %v, want %q", tc.labels, err, tc.want)
		}
	}
}

func TestSplitRef(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, name, tag, digest string }{
		{"win11:2026.11", "win11", "2026.11", ""},
		{"win11@" + digest, "win11", "", digest},
	} {
		n, tag, d, err := ident.SplitRef(tc.in)
		if err != nil || n != tc.name || tag != tc.tag || d != tc.digest {
			t.Errorf("SplitRef(%q) = %q, %q, %q, %v, want %q, %q, %q", tc.in, n, tag, d, err, tc.name, tc.tag, tc.digest)
		}
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("é", 100)
	if got := ident.Quote(long); !strings.HasSuffix(got, "… (200 bytes)") || len(got) > 120 {
		t.Errorf("Quote(200 bytes) = %s, want it cut at a character with its length", got)
	}
	if got := ident.Quote("a\nb"); got != `"a\nb"` {
		t.Errorf(`Quote("a\nb") = %s`, got)
	}
}
