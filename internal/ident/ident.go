package ident

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error a checker of this package returns.
var ErrInvalid = errors.New("invalid name")

// Error is a name that breaks the rule of its kind.
type Error struct {
	// Kind is the kind of name: "node id", "image name".
	Kind string
	// Value is the name as given.
	Value string
	// Problem says what is wrong: "is empty", "has '.'".
	Problem string
	// Rule is the rule of the kind: "1 to 64 ASCII letters, digits, '-' or '_'".
	Rule string
	// Hint says what to do.
	Hint string

	// whole: Problem says it all, the value is not shown (a count).
	whole bool
}

func (e *Error) Error() string {
	if e.whole {
		return fmt.Sprintf("%s: use %s; %s", e.Problem, e.Rule, e.Hint)
	}
	return fmt.Sprintf("%s %s %s: use %s; %s", e.Kind, Quote(e.Value), e.Problem, e.Rule, e.Hint)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// quoteLimit is how many bytes of a value Quote keeps.
const quoteLimit = 80

// Quote quotes s for an error message, cut at a character boundary so
// that a hostile megabyte-long name does not end up in logs whole.
func Quote(s string) string {
	if len(s) <= quoteLimit {
		return fmt.Sprintf("%q", s)
	}
	cut := quoteLimit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

// rule is the rule of one kind of name.
type rule struct {
	kind     string
	min, max int                 // length in bytes
	ok       func(rune) bool     // the characters allowed
	chars    string              // what ok allows, for the message
	desc     string              // the whole rule, when "1 to max chars" does not say it
	shape    func(string) string // a further problem, or ""; may be nil
	hint     string
}

// check returns nil if s follows r, else an *Error.
func (r rule) check(s string) error {
	if p := r.problem(s); p != "" {
		return &Error{Kind: r.kind, Value: s, Problem: p, Rule: r.describe(), Hint: r.hint}
	}
	return nil
}

func (r rule) problem(s string) string {
	switch {
	case s == "" && r.min > 0:
		return "is empty"
	case len(s) > r.max:
		return fmt.Sprintf("is %d bytes long, the limit is %d", len(s), r.max)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	for _, c := range s {
		if !r.ok(c) {
			return fmt.Sprintf("has %q", c)
		}
	}
	if r.shape != nil {
		return r.shape(s)
	}
	return ""
}

func (r rule) describe() string {
	if r.desc != "" {
		return r.desc
	}
	if r.min == 0 {
		return fmt.Sprintf("at most %d bytes of %s", r.max, r.chars)
	}
	return fmt.Sprintf("1 to %d %s", r.max, r.chars)
}

func isASCIIAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// oneOf allows ASCII letters, digits and the characters in extra.
func oneOf(extra string) func(rune) bool {
	return func(c rune) bool {
		if isASCIIAlnum(c) {
			return true
		}
		for _, e := range extra {
			if c == e {
				return true
			}
		}
		return false
	}
}

// isVisibleASCII allows '!' to '~': no spaces, no control characters.
func isVisibleASCII(c rune) bool { return c >= '!' && c <= '~' }
