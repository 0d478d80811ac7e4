package cardapp

import (
	"context"
	"fmt"
	"testing"

	"ssstation/cardapp/keys"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// LegacyCode gives appendix A's codes (card-reference §7), and minus the
// status word in decimal otherwise.
func TestLegacyCode(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"ok", nil, 0},
		{"wrong PIN", fmt.Errorf("verify PIN: %w", &WrongPIN{Retries: 2}), -51},
		{"PIN blocked by the last try", fmt.Errorf("verify PIN: %w", pinOutcome(0x63C0)), -52},
		{"PIN blocked", fmt.Errorf("verify PIN: %w", pinOutcome(apdu.SWAuthBlocked)), -52},
		{"policy", ErrPINMismatch, -34},
		{"not genuine", fmt.Errorf("read card: %w", ErrCardNotGenuine), -21},
		{"no key provider", fmt.Errorf("verify card: %w", keys.ErrNoProvider), -2201},
		{"no RKSSSE", fmt.Errorf("read card: %w", ErrNoReadKey), -2203},
		{"unknown card", &UnknownCardError{Reason: "x"}, -1},
		{"no card", fmt.Errorf("connect: %w", pcsc.ErrNoCard), -2},
		{"removed", fmt.Errorf("read: %w", pcsc.ErrCardRemoved), -2},
		{"unresponsive", pcsc.ErrUnresponsive, -4},
		{"6A82", statusError(apdu.SWFileNotFound), -27266},
		{"9303", fmt.Errorf("identify card: %w", statusError(apdu.SWAppLocked)), -37635},
		{"6283", statusError(apdu.SWWarningFileInvalidated), -25219},
		{"6982", statusError(apdu.SWSecurityStatus), -27010},
		{"6700", apdu.StatusWord(0x6700), -26368},
		{"key refused", &WrongKey{KeyIndex: 0x0A, Retries: 2}, -25538},
		{"key blocked", fmt.Errorf("%w: key 0A", ErrKeyBlocked), -27011},
		{"cancelled", context.Canceled, -31},
		{"other", fmt.Errorf("something else"), -4},
	} {
		if got := LegacyCode(c.err); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	for err, want := range map[error]string{
		statusError(apdu.SWAppLocked):              StateBlockedPerm,
		statusError(apdu.SWWarningFileInvalidated): StateBlockedTemp,
		statusError(apdu.SWFuncNotSupported):       StateCardBlocked,
		pcsc.ErrNoCard:                             StateNotIdentified,
	} {
		if got := StateOf(err); got != want {
			t.Errorf("StateOf(%v) = %s, want %s", err, got, want)
		}
	}
}
