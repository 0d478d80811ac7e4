package pcsc_test

import (
	"context"
	"testing"
	"time"

	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
)

// A card pulled right after the last APDU of a transaction that asked for
// a reset at its end (as after CHANGE PIN): once put back, pcscd sees it
// and it can be used again. (pcscd marks the reader empty itself when the
// reset fails; a card back before its next presence poll went unseen
// until vpcd.MinOutTime kept a pulled card out long enough.)
func TestReinsertAfterPullAtResettingEnd(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, card := vc.Connect(t, nil)
	vc.Slot.RemoveAfter(1)
	err := card.Transaction(context.Background(), func(ctx context.Context) error {
		card.ResetAtEnd()
		_, err := card.Transmit(ctx, apdu.Command{INS: 0x84, Ne: 8})
		return err
	})
	t.Logf("transaction: %v", err)
	vc.Slot.Remove()
	if err := vc.WaitPresence(false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	vc.Slot.Insert()
	if err := vc.WaitPresence(true, 10*time.Second); err != nil {
		t.Fatalf("after the pull at a resetting end: %v", err)
	}
	_, again := vc.Connect(t, nil)
	if _, err := again.Transmit(context.Background(), apdu.Command{INS: 0x84, Ne: 8}); err != nil {
		t.Fatal(err)
	}
}
