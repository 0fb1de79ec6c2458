package ident

import (
	"fmt"
	"maps"
	"slices"
	"unicode"
)

// Limits of labels, pools, slot labels, token names and request ids.
const (
	// MaxLabelKeyLen is the longest label key, in bytes.
	MaxLabelKeyLen = 63
	// MaxTextLen is the longest label value, pool or slot label, in bytes.
	MaxTextLen = 255
	// MaxLabels is the most labels a node, a job, an image or a selector
	// may have.
	MaxLabels = 64
	// MaxTokenNameLen is the longest API token name, in bytes.
	MaxTokenNameLen = 64
	// MaxRequestIDLen is the longest request id of a submit, in bytes.
	MaxRequestIDLen = 128
)

// textChars describes isText.
const textChars = "printable text (letters, marks, numbers, punctuation, symbols, the ASCII space)"

// isText allows printable characters and the ASCII space: no control
// characters, which would rewrite a terminal, and no format characters or
// other spaces, which would make two labels look alike.
func isText(c rune) bool { return c == ' ' || unicode.IsPrint(c) }

var (
	labelKeyRule = rule{kind: "label key", min: 1, max: MaxLabelKeyLen, ok: oneOf("._-"),
		chars: "ASCII letters, digits, '.', '_' or '-'",
		hint:  "use keys such as site or rack (a label is typed as KEY=VALUE)"}
	labelValueRule = rule{kind: "label value", max: MaxTextLen, ok: isText, chars: textChars,
		hint: "shorten it, or remove the control or invisible characters"}
	poolRule = rule{kind: "pool", max: MaxTextLen, ok: isText, chars: textChars,
		hint: "name pools such as usb-bench"}
	slotLabelRule = rule{kind: "slot label", max: MaxTextLen, ok: isText, chars: textChars,
		hint: `write slot labels such as "bench 3, port 12"`}
	tokenNameRule = rule{kind: "token name", min: 1, max: MaxTokenNameLen, ok: oneOf("._@-"),
		chars: "ASCII letters, digits, '.', '_', '@' or '-'", hint: "name tokens such as alice or ci@lab"}
	requestIDRule = rule{kind: "request id", min: 1, max: MaxRequestIDLen, ok: isVisibleASCII,
		chars: "visible ASCII characters (no spaces)", hint: "use a UUID, or leave it out to get a random one"}
)

// LabelKey checks a label key: 1 to MaxLabelKeyLen ASCII letters, digits,
// '.', '_' or '-'. Labels are typed as KEY=VALUE, several to a flag
// separated by ','; a key with '=', ',' or a space could not be.
func LabelKey(s string) error { return labelKeyRule.check(s) }

// LabelValue checks a label value: at most MaxTextLen bytes of printable
// text, possibly empty.
func LabelValue(s string) error { return labelValueRule.check(s) }

// Labels checks a set of labels: at most MaxLabels, each key a LabelKey
// and each value a LabelValue. The first bad one is named, in key order.
func Labels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return &Error{Kind: "labels", Problem: fmt.Sprintf("%d labels, the limit is %d", len(labels), MaxLabels),
			Rule: fmt.Sprintf("at most %d labels", MaxLabels), Hint: "keep only the labels that select or describe", whole: true}
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if err := LabelKey(k); err != nil {
			return err
		}
		if err := LabelValue(labels[k]); err != nil {
			return fmt.Errorf("label %s: %w", Quote(k), err)
		}
	}
	return nil
}

// Pool checks a pool name: at most MaxTextLen bytes of printable text; ""
// is no pool.
func Pool(s string) error { return poolRule.check(s) }

// SlotLabel checks what a node config calls a slot: at most MaxTextLen
// bytes of printable text; "" is none.
func SlotLabel(s string) error { return slotLabelRule.check(s) }

// TokenName checks an API token's name: 1 to MaxTokenNameLen ASCII
// letters, digits, '.', '_', '@' or '-'. It is shown as the actor of audit
// records, so it has no spaces or look-alike characters.
func TokenName(s string) error { return tokenNameRule.check(s) }

// RequestID checks the request id of a submit: 1 to MaxRequestIDLen
// visible ASCII characters. It makes a retried submit return its first
// job and is shown in errors, so it is bounded and has no control
// characters.
func RequestID(s string) error { return requestIDRule.check(s) }
