package drive

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []mount
	}{
		{"plain", "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n",
			[]mount{{DevNum: "254:0", Point: "/", FSType: "ext4", Source: "/dev/vda"}}},
		{"optional fields", "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n",
			[]mount{{DevNum: "98:0", Point: "/mnt2", FSType: "ext3", Source: "/dev/root"}}},
		{"escaped space", `42 27 259:0 / /media/USB\040KEY rw - vfat /dev/sdb1 rw` + "\n",
			[]mount{{DevNum: "259:0", Point: "/media/USB KEY", FSType: "vfat", Source: "/dev/sdb1"}}},
		{"btrfs anonymous device", "29 1 0:27 /@ / rw - btrfs /dev/nvme0n1p2 rw,ssd\n",
			[]mount{{DevNum: "0:27", Point: "/", FSType: "btrfs", Source: "/dev/nvme0n1p2"}}},
		{"empty source", "50 27 0:45 / /tmp/x rw - tmpfs  rw\n",
			[]mount{{DevNum: "0:45", Point: "/tmp/x", FSType: "tmpfs", Source: ""}}},
		{"two", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / /boot rw - ext4 /dev/sda2 rw\n",
			[]mount{{DevNum: "8:1", Point: "/", FSType: "ext4", Source: "/dev/sda1"}, {DevNum: "8:2", Point: "/boot", FSType: "ext4", Source: "/dev/sda2"}}},
		{"empty", "", nil},
	} {
		got, err := parseMountinfo(strings.NewReader(tc.in))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: parseMountinfo() = %+v, %v, want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestParseMountinfoMalformed(t *testing.T) {
	for _, in := range []string{"27 1 254:0 / / rw ext4 /dev/vda rw\n", "27 1 254:0 / / rw -\n", "garbage\n"} {
		if got, err := parseMountinfo(strings.NewReader(in)); err == nil {
			t.Errorf("parseMountinfo(%q) = %+v, want an error (the guards then refuse)", in, got)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/back\134slash`: `/back\slash`,
		`/trailing\04`: `/trailing\04`, `/bad\999`: `/bad\999`, "/plain": "/plain"} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSwaps(t *testing.T) {
	in := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" +
		"/dev/loop0                              partition\t32764\t\t0\t\t-2\n" +
		"/swap\\040file                           file\t\t1048572\t\t0\t\t-3\n" +
		"/old.swap\\040(deleted)                  file\t\t1048572\t\t0\t\t-4\n"
	want := []string{"/dev/loop0", "/swap file", "/old.swap (deleted)"}
	if got := parseSwaps(strings.NewReader(in)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseSwaps() = %q, want %q", got, want)
	}
}

func TestMountOf(t *testing.T) {
	mounts := []mount{
		{DevNum: "254:0", Point: "/"},
		{DevNum: "7:0", Point: "/srv/cache"},
		{DevNum: "7:1", Point: "/srv/cache"}, // mounted over the first
		{DevNum: "7:2", Point: "/srv/cache2"},
	}
	for path, want := range map[string]string{"/srv/cache/chunks": "7:1", "/srv/cache": "7:1", "/srv/cache2/x": "7:2", "/srv/cachet": "254:0", "/": "254:0"} {
		if m, ok := mountOf(path, mounts); !ok || m.DevNum != want {
			t.Errorf("mountOf(%s) = %+v, want %s", path, m, want)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n36 35 98:0 /mnt1 /mnt2 rw master:1 - ext3 /dev/root rw\n")
	f.Add(`42 27 259:0 / /media/USB\040KEY rw - vfat /dev/sdb1 rw`)
	f.Fuzz(func(t *testing.T, in string) {
		mounts, err := parseMountinfo(strings.NewReader(in))
		if err == nil && len(mounts) > strings.Count(in, "\n")+1 {
			t.Errorf("parseMountinfo() = %d mounts from %d lines", len(mounts), strings.Count(in, "\n")+1)
		}
		parseSwaps(strings.NewReader(in))
	})
}
