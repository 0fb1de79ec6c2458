package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// ParseDriveRef parses "NODE/DRIVE". Both parts must be valid ids
// (ValidateID); nothing is trimmed or guessed. Errors wrap ErrBadDriveRef.
func ParseDriveRef(s string) (DriveRef, error) {
	node, drive, ok := strings.Cut(s, "/")
	if !ok {
		return DriveRef{}, fmt.Errorf("drive %s: want NODE/DRIVE, as `imagefarm drives` lists them: %w", quote(s), ErrBadDriveRef)
	}
	ref := DriveRef{NodeID: node, DriveID: drive}
	if err := ref.check(); err != nil {
		return DriveRef{}, fmt.Errorf("drive %s: %v: %w", quote(s), err, ErrBadDriveRef)
	}
	return ref, nil
}

// check says which half of r is not a valid id.
func (r DriveRef) check() error {
	if reason := idProblem(r.NodeID); reason != "" {
		return fmt.Errorf("node id %s", reason)
	}
	if reason := idProblem(r.DriveID); reason != "" {
		return fmt.Errorf("drive id %s", reason)
	}
	return nil
}

// ValidateID checks a node or drive id: 1 to MaxIDLen letters, digits, '.',
// '_', ':' or '-' — the characters the imager's drive ids are made of. The
// controller applies it to node ids at hello too, so every node can be named
// in a drive reference. Errors wrap ErrBadID.
func ValidateID(id string) error {
	if reason := idProblem(id); reason != "" {
		return fmt.Errorf("id %s %s: %w", quote(id), reason, ErrBadID)
	}
	return nil
}

// idProblem says what is wrong with id, or "" when nothing is.
func idProblem(id string) string {
	if id == "" {
		return "is empty"
	}
	if len(id) > MaxIDLen {
		return fmt.Sprintf("is %d bytes long, the limit is %d", len(id), MaxIDLen)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return fmt.Sprintf("has %q; ids use letters, digits, '.', '_', ':' and '-'", c)
		}
	}
	return ""
}

// CheckText checks a pool name, label key or label value: free text, but
// at most MaxTextLen bytes of printable UTF-8. Its error says what is wrong
// without repeating the text, and wraps no sentinel: the caller names the
// text and says what it is for.
func CheckText(s string) error {
	if len(s) > MaxTextLen {
		return fmt.Errorf("is %d bytes long, the limit is %d", len(s), MaxTextLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("has the control character %q", c)
		}
	}
	return nil
}

// CheckLabels checks the labels a selector requires, a node has or a job
// keeps: at most MaxLabels, with keys that are not empty, and keys and
// values that pass CheckText. Its error names the first bad label, in key
// order, and wraps no sentinel: the caller says what the labels are for.
func CheckLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels, the limit is %d", len(labels), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		err := CheckText(k)
		if k == "" {
			err = errors.New("the key is empty")
		} else if err == nil {
			err = CheckText(labels[k])
		}
		if err != nil {
			return fmt.Errorf("label %s=%s: %v", quote(k), quote(labels[k]), err)
		}
	}
	return nil
}

// quote quotes s for an error message, cut short so that an oversized input
// does not make an oversized message.
func quote(s string) string {
	const max = 80
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
