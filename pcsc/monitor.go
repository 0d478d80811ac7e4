package pcsc

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/ebfe/scard"
)

// EventType says what changed.
type EventType int

const (
	ReaderAdded EventType = iota + 1
	ReaderRemoved
	CardInserted
	CardRemoved
	ServiceLost     // pcscd went away; the monitor keeps trying to come back
	ServiceRestored // a new context is established after a loss
)

func (t EventType) String() string {
	switch t {
	case ReaderAdded:
		return "reader-added"
	case ReaderRemoved:
		return "reader-removed"
	case CardInserted:
		return "card-inserted"
	case CardRemoved:
		return "card-removed"
	case ServiceLost:
		return "service-lost"
	case ServiceRestored:
		return "service-restored"
	}
	return "unknown"
}

// Event is one change seen by the Monitor.
type Event struct {
	Type   EventType
	Reader string
	ATR    []byte // for CardInserted
	Err    error  // for ServiceLost
	Time   time.Time
}

// pnpNotification is the pseudo reader whose state changes when a reader
// is added or removed.
const pnpNotification = `\\?PnP?\Notification`

// Monitor watches every reader with SCardGetStatusChange on a context of
// its own and survives a restart of the service.
type Monitor struct {
	// Retry is the pause between attempts to reach a lost service.
	Retry time.Duration
}

// Run emits events on out until ctx ends. At start it reports every reader
// and every card already present, so a consumer needs no separate listing.
// Run owns its PC/SC context; it is cancelled through SCardCancel on that
// same context when ctx ends.
func (m *Monitor) Run(ctx context.Context, out chan<- Event) error {
	retry := m.Retry
	if retry == 0 {
		retry = 500 * time.Millisecond
	}
	lost := false
	for ctx.Err() == nil {
		pc, err := Establish()
		if err != nil {
			if !lost {
				lost = true
				emit(ctx, out, Event{Type: ServiceLost, Err: err})
			}
			sleep(ctx, retry)
			continue
		}
		if lost {
			lost = false
			emit(ctx, out, Event{Type: ServiceRestored})
		}
		err = m.watch(ctx, pc, out)
		_ = pc.Release()
		if ctx.Err() != nil {
			return nil
		}
		lost = true
		emit(ctx, out, Event{Type: ServiceLost, Err: err})
		sleep(ctx, retry)
	}
	return nil
}

type readerMemo struct {
	present bool
	count   uint32 // pcsc-lite's event counter (high 16 bits of the state)
}

// watch runs until the service is lost (returns the error) or ctx ends.
func (m *Monitor) watch(ctx context.Context, pc *Context, out chan<- Event) error {
	stop := pc.cancelOnDone(ctx)
	defer stop()

	known := map[string]*readerMemo{}
	defer func() {
		// Everything this context knew is gone with it.
		names := sortedKeys(known)
		for _, r := range names {
			if known[r].present {
				emit(ctx, out, Event{Type: CardRemoved, Reader: r})
			}
			emit(ctx, out, Event{Type: ReaderRemoved, Reader: r})
		}
	}()

	states := []scard.ReaderState{{Reader: pnpNotification, CurrentState: scard.StateUnaware}}
	relist := true
	for ctx.Err() == nil {
		if relist {
			relist = false
			names, err := pc.Readers()
			if err != nil {
				return err
			}
			next := []scard.ReaderState{states[0]}
			byName := map[string]scard.ReaderState{}
			for _, s := range states[1:] {
				byName[s.Reader] = s
			}
			for _, r := range names {
				if s, ok := byName[r]; ok {
					next = append(next, s)
					continue
				}
				known[r] = &readerMemo{}
				emit(ctx, out, Event{Type: ReaderAdded, Reader: r})
				next = append(next, scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware})
			}
			stillThere := map[string]bool{}
			for _, r := range names {
				stillThere[r] = true
			}
			for _, r := range sortedKeys(known) {
				if !stillThere[r] {
					if known[r].present {
						emit(ctx, out, Event{Type: CardRemoved, Reader: r})
					}
					delete(known, r)
					emit(ctx, out, Event{Type: ReaderRemoved, Reader: r})
				}
			}
			states = next
		}

		err := pc.sc.GetStatusChange(states, time.Minute)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, scard.ErrTimeout):
			continue
		case errors.Is(err, scard.ErrUnknownReader):
			relist = true // a reader left between listing and waiting
			continue
		default:
			// The service went away (or the context broke): the caller
			// establishes a new one.
			return wrap("monitor", "", err)
		}

		for i := range states {
			s := &states[i]
			ev := s.EventState
			// Feed the state back as the next CurrentState; a loop that does
			// not, spins (ebfe/scard issue 25).
			s.CurrentState = ev &^ scard.StateChanged
			if i == 0 {
				if ev&scard.StateChanged != 0 {
					relist = true
				}
				continue
			}
			memo := known[s.Reader]
			if memo == nil {
				continue
			}
			if ev&(scard.StateUnknown|scard.StateUnavailable) != 0 {
				relist = true
				continue
			}
			present := ev&scard.StatePresent != 0 && ev&scard.StateMute == 0
			count := uint32(ev) >> 16
			swapped := present && memo.present && count >= memo.count+2
			if memo.present && (!present || swapped) {
				emit(ctx, out, Event{Type: CardRemoved, Reader: s.Reader})
			}
			if present && (!memo.present || swapped) {
				emit(ctx, out, Event{Type: CardInserted, Reader: s.Reader, ATR: append([]byte(nil), s.Atr...)})
			}
			memo.present, memo.count = present, count
		}
	}
	return nil
}

func emit(ctx context.Context, out chan<- Event, ev Event) {
	ev.Time = time.Now()
	select {
	case out <- ev:
	case <-ctx.Done():
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func sortedKeys(m map[string]*readerMemo) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
