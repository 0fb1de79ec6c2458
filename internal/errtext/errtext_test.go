package errtext

import (
	"errors"
	"fmt"
	"testing"
)

var (
	errBadCount = errors.New("scheduler: bad count")
	errNotFound = errors.New("catalog: image not found")
	errInvalid  = errors.New("state: invalid id")
	errGone     = errors.New("storage: unreachable")
)

func TestMessage(t *testing.T) {
	r := Rules{Explained: []error{errBadCount, errInvalid}, Tagged: []error{errNotFound, errGone}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("count 0: a standing order writes 1 to 100000 drives: %w", errBadCount), "count 0: a standing order writes 1 to 100000 drives"},
		{fmt.Errorf("%w: job id \"../x\" has '.': use letters", errInvalid), `job id "../x" has '.': use letters`},
		{fmt.Errorf("%w: x:1 (list images with imagefarm image ls)", errNotFound), "image not found: x:1 (list images with imagefarm image ls)"},
		{fmt.Errorf("--wim x:1: %w", fmt.Errorf("%w: x:1", errNotFound)), "--wim x:1: image not found: x:1"},
		{fmt.Errorf("get chunk: %w", errGone), "get chunk: unreachable"},
		{errBadCount, "bad count"},
		{errors.New("scheduler: not a sentinel, left as it is"), "scheduler: not a sentinel, left as it is"},
	} {
		if got := r.Message(tc.err); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
