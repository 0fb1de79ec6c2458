package fatdisk

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Directory entry attributes.
const (
	attrVolumeLabel = 0x08
	attrDir         = 0x10
	attrArchive     = 0x20
	attrLongName    = 0x0f
)

const (
	maxNameUnits = 255 // UTF-16 units of a long name
	unitsPerSlot = 13  // UTF-16 units in one long-name entry
)

// CheckPath returns ErrBadFile, saying why, when a file at the slash path
// p could not be on a FAT32 volume because of a name in it: for checking
// files before they are downloaded to be written.
func CheckPath(p string) error {
	for _, name := range strings.Split(p, "/") {
		if err := checkName(name); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadFile, p, err)
		}
	}
	return nil
}

// checkName refuses a name that Windows could not open on FAT32.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not UTF-8", name)
	case strings.ContainsAny(name, `"*/:<>?\|`) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("name %q has a character FAT32 forbids (\"*/:<>?\\| or a control character)", name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("name %q ends in a dot or space, which Windows drops", name)
	case len(utf16.Encode([]rune(name))) > maxNameUnits:
		return fmt.Errorf("name %q is longer than %d UTF-16 units", name, maxNameUnits)
	}
	return nil
}

// shortChars are the characters an 8.3 name may hold besides A-Z and 0-9.
const shortChars = "$%'-_@~`!(){}^#&"

func isShortChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(shortChars, r)
}

// shortName returns the 8.3 name of name, unique among used, and whether
// the entry needs long-name entries to keep the name as it is. A name that
// is already a valid 8.3 name in capitals is kept; others get a numeric
// tail ("LONGFI~1.TXT"), as Windows makes them.
func shortName(name string, used map[[11]byte]bool) (short [11]byte, long bool) {
	upper := strings.ToUpper(name)
	base, ext, hasDot := strings.Cut(upper, ".")
	if !hasDot || !strings.Contains(ext, ".") {
		if fits(base, 8) && (!hasDot || fits(ext, 3) && ext != "") {
			short = pack(base, ext)
			if !used[short] {
				return short, upper != name
			}
		}
	}
	// Windows' basis name: capitals, no spaces or dots but the last,
	// anything else that is not an 8.3 character as "_".
	if i := strings.LastIndex(upper, "."); i > 0 {
		base, ext = upper[:i], upper[i+1:]
	} else {
		base, ext = upper, ""
	}
	base, ext = basis(base, 8), basis(ext, 3)
	if base == "" {
		base = "_"
	}
	for n := 1; ; n++ {
		tail := "~" + strconv.Itoa(n)
		short = pack(base[:min(len(base), 8-len(tail))]+tail, ext)
		if !used[short] {
			return short, true
		}
	}
}

func fits(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for _, r := range s {
		if !isShortChar(r) {
			return false
		}
	}
	return true
}

func basis(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case b.Len() == n:
			return b.String()
		case r == ' ' || r == '.':
		case isShortChar(r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func pack(base, ext string) (b [11]byte) {
	copy(b[:], fmt.Sprintf("%-8s%-3s", base, ext))
	return b
}

// lfnSlots is how many long-name entries n needs.
func lfnSlots(n *node) int {
	if !n.longName {
		return 0
	}
	return int(ceilDiv(int64(len(utf16.Encode([]rune(n.name)))), unitsPerSlot))
}

// volumeLabel checks and pads a volume label.
func volumeLabel(s string) (label [11]byte, err error) {
	if s == "" {
		s = "NO NAME"
	}
	if len(s) > 11 || strings.ContainsFunc(s, func(r rune) bool { return !isShortChar(r) && r != ' ' }) {
		return label, fmt.Errorf("fatdisk: volume label %q: want up to 11 of A-Z, 0-9, space and %s", s, shortChars)
	}
	copy(label[:], fmt.Sprintf("%-11s", s))
	return label, nil
}

// dosTime is t as FAT's date and time fields, in 2-second steps, within
// the years FAT can hold (1980 to 2107).
func dosTime(t time.Time) (date, clock uint16) {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	case t.Year() > 2107:
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	clock = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, clock
}

// dirBytes is the content of folder n: its entries, then zeros to the end
// of its clusters.
func (l *layout) dirBytes(n *node, label [11]byte, t time.Time) []byte {
	b := make([]byte, 0, int64(n.clusters)*l.clusterSize)
	date, clock := dosTime(t)
	entry := func(name [11]byte, attr byte, cluster uint32, size int64) {
		var e [entrySize]byte
		le := binary.LittleEndian
		copy(e[:11], name[:])
		e[11] = attr
		le.PutUint16(e[14:], clock) // created
		le.PutUint16(e[16:], date)
		le.PutUint16(e[18:], date) // accessed
		le.PutUint16(e[20:], uint16(cluster>>16))
		le.PutUint16(e[22:], clock) // written
		le.PutUint16(e[24:], date)
		le.PutUint16(e[26:], uint16(cluster))
		le.PutUint32(e[28:], uint32(size))
		b = append(b, e[:]...)
	}
	if n.parent == nil {
		entry(label, attrVolumeLabel, 0, 0)
	} else {
		// ".." of a folder in the root points at cluster 0, not the
		// root's cluster, as the specification says.
		up := n.parent.cluster
		if n.parent == l.root {
			up = 0
		}
		entry(pack(".", ""), attrDir, n.cluster, 0)
		entry(pack("..", ""), attrDir, up, 0)
	}
	for _, c := range n.children {
		b = append(b, lfnEntries(c)...)
		if c.dir {
			entry(c.short, attrDir, c.cluster, 0)
		} else {
			entry(c.short, attrArchive, c.cluster, c.size)
		}
	}
	return b[:cap(b)]
}

// lfnEntries are the long-name entries of n, last part first, as they
// precede its 8.3 entry.
func lfnEntries(n *node) []byte {
	slots := lfnSlots(n)
	if slots == 0 {
		return nil
	}
	units := utf16.Encode([]rune(n.name))
	if len(units)%unitsPerSlot != 0 {
		units = append(units, 0) // terminator, then 0xffff padding
		for len(units)%unitsPerSlot != 0 {
			units = append(units, 0xffff)
		}
	}
	var sum byte
	for _, c := range n.short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	b := make([]byte, 0, slots*entrySize)
	for i := slots; i >= 1; i-- {
		var e [entrySize]byte
		e[0] = byte(i)
		if i == slots {
			e[0] |= 0x40 // the last part
		}
		e[11], e[13] = attrLongName, sum
		part := units[(i-1)*unitsPerSlot : i*unitsPerSlot]
		for j, u := range part {
			// 5 units at 1, 6 at 14, 2 at 28
			off := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}[j]
			binary.LittleEndian.PutUint16(e[off:], u)
		}
		b = append(b, e[:]...)
	}
	return b
}
