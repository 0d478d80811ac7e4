package pcsctest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"ssstation/internal/cardsim/vpcd"
	"ssstation/pcsc"
)

// VirtualCard is a cardsim card sitting in a virtual reader.
type VirtualCard struct {
	Reader string // the PC/SC reader name to connect to
	Port   int
	Slot   *vpcd.Slot // fault injection: RemoveAfter, Drop, Latency, StatusOnce, Remove/Insert, SetCard
}

// StartCard inserts card into a free reader of this process's pcscd
// (waiting while both are taken by other tests of the process) and waits
// until pcscd reports it present. Everything is undone at test cleanup.
func StartCard(t testing.TB, card vpcd.Card) *VirtualCard {
	t.Helper()
	d := EnsurePCSCD(t)
	idx := claimSlot(t)
	vr := d.Readers[idx]
	// The previous test's card must have been out of this reader for
	// vpcd.MinOutTime (why: see there), whatever that test did last.
	process.Lock()
	out := process.outSince[idx]
	process.Unlock()
	time.Sleep(time.Until(out.Add(vpcd.MinOutTime)))
	ctx, cancel := context.WithCancel(context.Background())
	slot := vpcd.NewSlot(fmt.Sprintf("127.0.0.1:%d", vr.Port), card)
	done := make(chan struct{})
	go func() { defer close(done); _ = slot.Run(ctx) }()
	vc := &VirtualCard{Reader: vr.Name, Port: vr.Port, Slot: slot}
	t.Cleanup(func() {
		cancel()
		<-done
		// Let pcscd see the card leave before the next test takes the reader.
		_ = waitPresence(vr.Name, false, 5*time.Second)
		process.Lock()
		process.outSince[idx] = time.Now()
		process.Unlock()
		releaseSlot(idx)
	})
	if err := waitPresence(vr.Name, true, 10*time.Second); err != nil {
		t.Fatalf("virtual card in %q: %v\npcscd log:\n%s", vr.Name, err, d.Logs())
	}
	return vc
}

func claimSlot(t testing.TB) int {
	process.Lock()
	defer process.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for i, free := range process.free {
			if free {
				process.free[i] = false
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("both virtual readers stayed busy for 2 minutes")
		}
		// Cond has no timeout: wake up periodically.
		go func() { time.Sleep(100 * time.Millisecond); process.cond.Broadcast() }()
		process.cond.Wait()
	}
}

func releaseSlot(i int) {
	process.Lock()
	process.free[i] = true
	process.Unlock()
	process.cond.Broadcast()
}

// WaitPresence waits until pcscd reports the card present (or absent).
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
