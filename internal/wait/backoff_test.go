package wait

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesToMax(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("pause %d: Next() = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Errorf("Next() after Reset = %v, want 100ms", got)
	}
}

// TestBackoffMaxBelowMin: a Max under Min caps from the first pause.
func TestBackoffMaxBelowMin(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 300 * time.Millisecond}
	for i := range 3 {
		if got := b.Next(); got != 300*time.Millisecond {
			t.Errorf("pause %d: Next() = %v, want 300ms", i+1, got)
		}
	}
}

func TestBackoffJitterInHalfToWhole(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 64 * time.Millisecond, Jitter: true}
	d := time.Millisecond
	for i := range 200 {
		got := b.Next()
		if got < d/2 || got > d {
			t.Fatalf("pause %d: Next() = %v, want in [%v, %v]", i+1, got, d/2, d)
		}
		d = min(2*d, 64*time.Millisecond)
	}
}

func TestBackoffWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	if b.Wait(ctx) {
		t.Errorf("Wait(canceled ctx) = true, want false")
	}
	b = Backoff{Min: time.Millisecond, Max: time.Millisecond}
	if !b.Wait(t.Context()) {
		t.Errorf("Wait(live ctx) = false, want true")
	}
}
