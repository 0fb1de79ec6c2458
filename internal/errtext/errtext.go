// Package errtext owns how an error reads to a person where it leaves the
// program: the controller's API (a gRPC status message) and the CLI's last
// line. Inside, errors keep their packages' sentinels, whose text carries
// a package tag ("scheduler: bad count") so that logs say where they came
// from; at the boundary those tags are internal words the reader cannot
// act on.
package errtext

import (
	"errors"
	"strings"
)

// Rules say which sentinels an error may wrap and how each reads.
type Rules struct {
	// Explained are sentinels that every message wrapping them explains:
	// it says what was wrong and what to do, so the sentinel's own text,
	// at the message's end or start, goes.
	Explained []error
	// Tagged are the other sentinels: their text stays, less its package
	// tag ("catalog: image not found" reads "image not found").
	Tagged []error
}

// Message is err's text for a person, by r.
func (r Rules) Message(err error) string {
	msg := err.Error()
	for _, s := range r.Explained {
		if !errors.Is(err, s) {
			continue
		}
		if rest, ok := strings.CutSuffix(msg, ": "+s.Error()); ok {
			msg = rest
		} else if rest, ok := strings.CutPrefix(msg, s.Error()+": "); ok {
			msg = rest
		}
	}
	for _, s := range append(r.Explained, r.Tagged...) {
		text := s.Error()
		if _, what, ok := strings.Cut(text, ": "); ok && errors.Is(err, s) {
			msg = strings.ReplaceAll(msg, text, what)
		}
	}
	return msg
}
