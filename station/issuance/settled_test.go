package issuance

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/pcsc/apdu"
	"ssstation/station/journal"
)

// Which errors end an attempt failed (a refusal known to have changed
// nothing) and which interrupted (the outcome unknown: resumable).
func TestSettledOnlyForKnownRefusals(t *testing.T) {
	for _, c := range []struct {
		name    string
		err     error
		settled bool
	}{
		{"cancelled (Ctrl-C, SIGTERM)", fmt.Errorf("step 2 (set holder PIN): %w", context.Canceled), false},
		{"deadline", fmt.Errorf("transmit: %w", context.DeadlineExceeded), false},
		{"disk full while recording a step", &cardapp.JournalError{Err: fmt.Errorf("write journal.db: %w", syscall.ENOSPC)}, false},
		{"stale attempt", &cardapp.JournalError{Err: journal.ErrStale}, false},
		{"one try left", fmt.Errorf("activate: %w", cardapp.ErrLastTry), false},
		{"not the first PIN", ErrNotFirstPIN, false},
		{"an error nobody classified", errors.New("reader firmware said something odd"), false},
		{"card refused with a status word", fmt.Errorf("step 3: %w", apdu.StatusWord(0x6982)), true},
		{"card refused the initial PIN", &cardapp.WrongPIN{Retries: 2}, true},
		{"validation", &cardapp.ValidationError{}, true},
		{"no key provider", fmt.Errorf("activate: %w", keys.ErrNoProvider), true},
		{"read-back differs", fmt.Errorf("x: %w", cardapp.ErrReadBackMismatch), true},
		{"blocked already", cardapp.ErrAlreadyBlocked, true},
	} {
		if got := settled(c.err); got != c.settled {
			t.Errorf("%s: settled = %v, want %v", c.name, got, c.settled)
		}
	}
}
