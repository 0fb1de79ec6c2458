// Package ident checks the identifiers that name imagefarm's records, KV
// keys and NATS subjects, where '.', '*', '>', '/', spaces and control
// characters would change a key's or a subject's meaning.
package ident

import (
	"fmt"
	"strings"
)

// Valid reports whether s is 1 to max ASCII letters, digits, '-' or '_'.
func Valid(s string, max int) bool {
	return s != "" && len(s) <= max && strings.IndexFunc(s, notIDRune) < 0
}

func notIDRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		return false
	}
	return true
}

// Quote quotes s for an error message, cut so that a hostile
// megabyte-long id does not end up in logs whole.
func Quote(s string) string {
	const limit = 80
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
