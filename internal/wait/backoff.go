package wait

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the pause of a retry loop: Min before the first retry,
// doubling after each pause up to Max. With Jitter each pause is drawn
// from [d/2, d], so that many processes failing together (a farm's nodes
// after a restart, racing writers) do not retry in step. The zero value of
// its state is ready: declare it with Min and Max and call Wait or Next.
type Backoff struct {
	Min, Max time.Duration
	Jitter   bool

	next time.Duration // the next pause before jitter; 0: Min
}

// Next returns the pause before the next attempt and doubles the one
// after it, up to Max. A loop that waits in its own way (a pause cut
// short by a deadline) calls Next and Sleep; others call Wait.
func (b *Backoff) Next() time.Duration {
	d := b.next
	if d <= 0 {
		d = b.Min
	}
	d = min(d, b.Max)
	b.next = min(2*d, b.Max)
	if b.Jitter && d > 0 {
		return d/2 + rand.N(d/2+1)
	}
	return d
}

// Wait pauses for Next or until ctx ends, and reports whether it paused
// the whole time.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Reset makes the next pause Min again: the loop's last attempt got far
// enough that the failures before it no longer count.
func (b *Backoff) Reset() { b.next = 0 }
