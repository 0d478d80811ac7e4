package issuance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ebfe/scard"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/pcsc"
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

// A busy reader (another program held the card longer than we would wait)
// is transient: the command that met it was not sent, so the attempt is
// interrupted, resumable later, never failed; before the journal entry
// exists it is an interrupted start, and after it the entry says
// interrupted.
func TestBusyReaderInterruptsNeverFails(t *testing.T) {
	busy := []error{
		&pcsc.Error{Op: "begin transaction", Reader: "Virtual PCD 00 00", Kind: pcsc.KindBusy, Err: context.DeadlineExceeded},
		fmt.Errorf("step 2: %w", &pcsc.Error{Op: "connect", Kind: pcsc.KindBusy, Code: scard.ErrSharingViolation}),
	}
	s, err := journal.OpenWith(filepath.Join(t.TempDir(), "journal.db"), journal.Options{Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &Runner{Journal: s}
	for i, b := range busy {
		if !transient(b) || settled(b) {
			t.Fatalf("%v: transient %v, settled %v; want transient, not settled", b, transient(b), settled(b))
		}
		if out, err := early("op-early", b); out == nil || out.Status != journal.StatusInterrupted || !errors.Is(err, ErrInterrupted) {
			t.Fatalf("before the entry: %+v, %v; want interrupted", out, err)
		}
		sum := sha256.Sum256([]byte{byte(i)})
		op := fmt.Sprintf("op-busy-%d", i)
		e, _, err := s.Begin(journal.Entry{OpID: op, Kind: journal.KindActivate, CardID: "0123456789ABCDEF0123456789ABCDEF",
			Profile: "ss-v3-sm4", PayloadDigest: hex.EncodeToString(sum[:])})
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.end(e, b)
		if out.Status != journal.StatusInterrupted || !errors.Is(err, ErrInterrupted) || pcsc.KindOf(err) != pcsc.KindBusy {
			t.Fatalf("end: %+v, %v; want interrupted, the busy error kept", out, err)
		}
		if got, err := s.Get(op); err != nil || got.Status != journal.StatusInterrupted {
			t.Fatalf("journal entry after a busy reader: %+v, %v", got, err)
		}
	}
}
