package main

import (
	"os"
	"strings"
	"testing"

	"ssstation/pcsc/pcsctest"
)

// An empty second entry never confirms a new PIN (issue 8 §9): `pin
// change` and `pin reload` refuse it as a usage error before the card is
// touched (no APDU reaches it), and the card keeps its PIN.
func TestPINChangeAndReloadNeedConfirmation(t *testing.T) {
	card := ssseCard(t, "sample-v2")
	vc := pcsctest.StartCard(t, card)
	env := append(os.Environ(), "SSSTATION_CONFIG=")
	pin := card.PIN()
	for _, c := range []struct {
		verb, stdin string
	}{
		{"reload", "975318\n\n"},
		{"change", pin + "\n975318\n\n"},
	} {
		before := card.APDUCount()
		r := runSSCardStdin(t, env, c.stdin, "pin", c.verb, "--reader", vc.Reader, "--pin-stdin")
		if r.code != 2 || !strings.Contains(r.stderr, "not confirmed") {
			t.Fatalf("pin %s with an empty confirmation: exit %d: %s %s", c.verb, r.code, r.stdout, r.stderr)
		}
		if n := card.APDUCount() - before; n != 0 {
			t.Fatalf("pin %s with an empty confirmation: %d APDUs reached the card", c.verb, n)
		}
		if card.PIN() != pin {
			t.Fatalf("pin %s with an empty confirmation changed the PIN", c.verb)
		}
	}
}
