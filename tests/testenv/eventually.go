package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 20 * time.Millisecond

// Eventually checks cond every 20ms until it holds, and fails the test,
// naming what it waited for, if it does not within timeout. It is for
// waiting until something happens; a test proves that something did not
// happen by waiting for a later event that must follow it, never by
// polling or sleeping.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}
