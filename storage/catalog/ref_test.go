package catalog_test

import (
	"errors"
	"testing"

	"github.com/imagefarm/imagefarm/storage/catalog"
)

func TestParseRef(t *testing.T) {
	digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		in   string
		want catalog.Ref
	}{
		{"win11:2026.11", catalog.Ref{Name: "win11", Tag: "2026.11"}},
		{"universal:stable", catalog.Ref{Name: "universal", Tag: "stable"}},
		{"Dell-Latitude_7440:A12+1", catalog.Ref{Name: "Dell-Latitude_7440", Tag: "A12+1"}},
		{"win11@" + digest, catalog.Ref{Name: "win11", Digest: digest}},
	} {
		got, err := catalog.ParseRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v, want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "win11", ":1", "win11:", "../etc:1", "a/b:1", "a:b/c", "a:..", "a..b:1", ".hidden:1", "a:.1",
		"a:1\n", "a\x00:1", "a: 1", "a:b:c", "a@sha256:xyz", "a@md5:" + digest[7:], "a@sha256:" + digest[7:] + "0",
		"a@SHA256:" + digest[7:], "a:" + string(make([]byte, 129)),
	} {
		if _, err := catalog.ParseRef(in); !errors.Is(err, catalog.ErrBadRef) {
			t.Errorf("ParseRef(%q) = %v, want ErrBadRef", in, err)
		}
	}
}
