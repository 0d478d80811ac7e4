package pcsc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/pcsctest"
)

// within runs f and fails the test if it has not returned after a minute:
// a hang guard, far above any bound under test, not a speed target.
func within[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("%s hung", what)
		panic("unreachable")
	}
}

// holdTransaction makes card hold a transaction until the returned func is
// called.
func holdTransaction(t *testing.T, card *pcsc.Card) (release func()) {
	t.Helper()
	held, let := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- card.Transaction(context.Background(), func(ctx context.Context) error {
			close(held)
			<-let
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("holder's transaction: %v", err)
	}
	once := false
	release = func() {
		if once {
			return
		}
		once = true
		close(let)
		if err := <-done; err != nil {
			t.Errorf("holder's transaction: %v", err)
		}
	}
	t.Cleanup(release)
	return release
}

// While another handle holds a transaction on the card, Connect and
// BeginTransaction wait (pcscd makes them), but only as long as the
// context (or BusyWait) allows: they return KindBusy, and the card is
// free for the next comer once the holder lets go.
func TestBusyCardWaitsAreBounded(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	_, holder := vc.Connect(t, nil)
	_, waiter := vc.Connect(t, nil) // connected before the holder locks
	release := holdTransaction(t, holder)

	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	opts := pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard}

	// Connect with a deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = within(t, "connect to a busy card", func() error {
		c, err := pc.Connect(ctx, vc.Reader, opts)
		if err == nil {
			c.Close()
		}
		return err
	})
	if pcsc.KindOf(err) != pcsc.KindBusy || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connect to a busy card: %v (kind %v), want reader busy", err, pcsc.KindOf(err))
	}
	t.Logf("connect: %v", err)

	// Connect bounded by BusyWait alone.
	bo := opts
	bo.BusyWait = 300 * time.Millisecond
	err = within(t, "connect to a busy card", func() error {
		_, err := pc.Connect(context.Background(), vc.Reader, bo)
		return err
	})
	if pcsc.KindOf(err) != pcsc.KindBusy {
		t.Fatalf("connect with BusyWait: %v (kind %v), want reader busy", err, pcsc.KindOf(err))
	}

	// BeginTransaction, cancelled (Ctrl-C): SCardCancel does not reach it.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err = within(t, "begin transaction on a busy card", func() error {
		return waiter.Transaction(ctx, func(ctx context.Context) error {
			t.Error("the transaction began while another handle held it")
			return nil
		})
	})
	if pcsc.KindOf(err) != pcsc.KindBusy || !errors.Is(err, context.Canceled) {
		t.Fatalf("begin transaction on a busy card: %v (kind %v), want reader busy", err, pcsc.KindOf(err))
	}
	if !errors.Is(err, pcsc.ErrBusy) {
		t.Fatalf("errors.Is(err, ErrBusy) is false for %v", err)
	}
	t.Logf("begin transaction: %v", err)
	// The waiter gave its handle up: it says so rather than trying again.
	if _, err := waiter.Transmit(context.Background(), apdu.Command{INS: 0x84, Ne: 8}); pcsc.KindOf(err) != pcsc.KindBusy {
		t.Fatalf("transmit on the abandoned connection: %v", err)
	}

	// Once the holder lets go, a newcomer gets the card at once.
	release()
	card := within(t, "connect after release", func() *pcsc.Card {
		c, err := pc.Connect(context.Background(), vc.Reader, opts)
		if err != nil {
			t.Errorf("connect after the holder let go: %v", err)
		}
		return c
	})
	if card == nil {
		t.FailNow()
	}
	defer card.Close()
	err = within(t, "transaction after release", func() error {
		return card.Transaction(context.Background(), func(ctx context.Context) error {
			resp, err := card.Transmit(ctx, apdu.Command{INS: 0x84, Ne: 8})
			if err == nil && !resp.SW.OK() {
				err = resp.SW
			}
			return err
		})
	})
	if err != nil {
		t.Fatalf("transaction after the holder let go: %v", err)
	}
}

// Connecting to an empty reader is "no card", not a removal.
func TestConnectToEmptyReader(t *testing.T) {
	vc := pcsctest.StartCard(t, newDefaultCard(t, false))
	vc.Slot.Remove()
	if err := vc.WaitPresence(false, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pc, err := pcsc.Establish()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	_, err = pc.Connect(context.Background(), vc.Reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if !errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved) {
		t.Fatalf("connect to an empty reader: %v (kind %v), want no card", err, pcsc.KindOf(err))
	}
	vc.Slot.Insert()
	if err := vc.WaitPresence(true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
