package pcsctest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"ssstation/cmd/cardsim/vpcd"
	"ssstation/pcsc"
)

// VirtualCard is a cardsim card sitting in a claimed vpcd reader.
type VirtualCard struct {
	Reader string // the PC/SC reader name to connect to
	Port   int
	Slot   *vpcd.Slot // fault injection: RemoveAfter, Drop, Latency, StatusOnce, Remove/Insert
}

// StartCard claims a free virtual reader (waiting for one if every reader
// is busy in other test processes), inserts card into it and waits until
// pcscd reports the card present. Everything is undone at test cleanup.
func StartCard(t testing.TB, card vpcd.Card) *VirtualCard {
	t.Helper()
	readers := EnsurePCSCD(t)
	vr, lock := claimReader(t, readers)
	ctx, cancel := context.WithCancel(context.Background())
	slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", vr.Port), card)
	done := make(chan struct{})
	go func() { defer close(done); _ = slot.Run(ctx) }()
	vc := &VirtualCard{Reader: vr.Name, Port: vr.Port, Slot: slot}
	t.Cleanup(func() {
		cancel()
		<-done
		// Let pcscd see the card leave before another process claims the reader.
		_ = waitPresence(vr.Name, false, 5*time.Second)
		lock.unlock()
	})
	if err := waitPresence(vr.Name, true, 10*time.Second); err != nil {
		t.Fatalf("virtual card in %q: %v", vr.Name, err)
	}
	return vc
}

// claimReader takes the flock of the first free virtual reader.
func claimReader(t testing.TB, readers []VirtualReader) (VirtualReader, *fileLock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		for _, r := range readers {
			l, ok, err := tryLock(portLockPath(r.Port))
			if err != nil {
				t.Fatalf("claiming reader %q: %v", r.Name, err)
			}
			if ok {
				return r, l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no free virtual reader after 5 minutes (%d readers, all claimed by other test processes)", len(readers))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitPresence waits until pcscd reports the card in reader present (or
// absent).
func (vc *VirtualCard) WaitPresence(present bool, timeout time.Duration) error {
	return waitPresence(vc.Reader, present, timeout)
}

func waitPresence(reader string, present bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		pc, err := pcsc.Establish()
		if err == nil {
			st, err := pc.Status([]string{reader})
			pc.Release()
			if err == nil && len(st) == 1 && st[0].CardPresent == present {
				return nil
			}
			last = err
		} else {
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("card presence did not become %v within %s (last error: %v)", present, timeout, last)
}

// Connect opens a PC/SC context and a shared connection to the virtual
// card, both closed at cleanup.
func (vc *VirtualCard) Connect(t testing.TB, tracer pcsc.Tracer) (*pcsc.Context, *pcsc.Card) {
	t.Helper()
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatalf("establish: %v", err)
	}
	card, err := pc.Connect(context.Background(), vc.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard, Tracer: tracer})
	if err != nil {
		pc.Release()
		t.Fatalf("connect %q: %v", vc.Reader, err)
	}
	t.Cleanup(func() { card.Close(); pc.Release() })
	return pc, card
}
