package issuance_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"ssstation/cardapp"
	"ssstation/internal/cardsim/ssse"
	"ssstation/station/issuance"
	"ssstation/station/journal"
)

// Pull the card after every APDU index of a personalization with lock.
// Each attempt ends complete or resumable; none is reported successful
// while a record differs; resuming on re-insertion completes.
func TestPersonalizePulledAtEveryAPDU(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the full fault sweep takes a minute")
	}
	req := requestFor("ss-v1-3des")
	// A clean run measures how many APDUs the card sees.
	st := newStation(t, "blank-v1")
	before := st.vc.Slot.Stats().APDUs
	if _, _, err := st.personalize("", req, true); err != nil {
		t.Fatal(err)
	}
	total := int(st.vc.Slot.Stats().APDUs - before)
	t.Logf("a clean personalization with lock: %d APDUs", total)

	for i := 1; i <= total; i++ {
		// A fresh blank card for each pull point.
		st.freshCard("blank-v1")

		start := st.vc.Slot.Stats().APDUs
		st.vc.Slot.RemoveAfter(i)
		res, out, err := st.personalize("", req, true)
		switch {
		case err == nil:
			// Completed before the pull point: it must be true.
			if out.Status != journal.StatusDone || !res.Locked {
				t.Fatalf("pull after %d: %+v %+v", i, res, out)
			}
			st.reinsertIfPulled(int(st.vc.Slot.Stats().APDUs-start) >= i)
		case errors.Is(err, issuance.ErrInterrupted):
			if out.Status != journal.StatusInterrupted {
				t.Fatalf("pull after %d: outcome %+v", i, out)
			}
			_, jerr := st.runner.Journal.Get(out.OpID)
			journaled := jerr == nil // pulled before the entry began: nothing to resume, nothing written
			st.vc.Slot.Insert()
			st.reconnect()
			// No --op: the card's unfinished personalization is found by
			// its identification code.
			res, out2, err := st.personalize("", req, true)
			if err != nil || out2.Status != journal.StatusDone || out2.Resumed != journaled || !res.Locked ||
				(journaled && out2.OpID != out.OpID) {
				t.Fatalf("pull after %d (%s): resume: %v %+v", i, out.StoppedAt, err, out2)
			}
		default:
			t.Fatalf("pull after %d: neither complete nor resumable: %v", i, err)
		}
		if st.sim.State() != ssse.StateFinalized {
			t.Fatalf("pull after %d: state %s", i, st.sim.State())
		}
		st.checkHolds(req)
	}
	st.leakCheck(req)
}

// Pull the card after every APDU index of an activation (a delivered card
// holding the initial PIN); the resumed activation completes with the
// holder's PIN set once and no try spent.
func TestActivatePulledAtEveryAPDU(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the full fault sweep takes a while")
	}
	st := newStation(t, "delivered-v3")
	before := st.vc.Slot.Stats().APDUs
	if _, _, err := st.activate("", holderPIN); err != nil {
		t.Fatal(err)
	}
	total := int(st.vc.Slot.Stats().APDUs - before)
	t.Logf("a clean activation: %d APDUs", total)

	for i := 1; i <= total; i++ {
		st.freshCard("delivered-v3")

		start := st.vc.Slot.Stats().APDUs
		st.vc.Slot.RemoveAfter(i)
		res, out, err := st.activate("", holderPIN)
		t.Logf("pull after %d: %v (%d APDUs)", i, err, st.vc.Slot.Stats().APDUs-start)
		switch {
		case err == nil:
			if out.Status != journal.StatusDone || !res.PINSet {
				t.Fatalf("pull after %d: %+v %+v", i, res, out)
			}
			st.reinsertIfPulled(int(st.vc.Slot.Stats().APDUs-start) >= i)
		case errors.Is(err, issuance.ErrInterrupted):
			_, jerr := st.runner.Journal.Get(out.OpID)
			journaled := jerr == nil
			st.vc.Slot.Insert()
			st.reconnect()
			// The same card, any reader: its unfinished activation is found
			// by its identification code and resumed.
			res2, out2, err := st.activate("", holderPIN)
			if err != nil || out2.Status != journal.StatusDone || (journaled && out2.OpID != out.OpID) {
				t.Fatalf("pull after %d (%s): resume: %v %+v %+v", i, out.StoppedAt, err, res2, out2)
			}
		default:
			var wp *cardapp.WrongPIN
			if errors.As(err, &wp) {
				t.Fatalf("pull after %d: the resume spent a PIN try: %v", i, err)
			}
			t.Fatalf("pull after %d: neither complete nor resumable: %v", i, err)
		}
		// A pulled card never carries out the command it did not receive,
		// so no resume here has a CHANGE PIN to guess about: no try spent.
		if st.sim.State() != ssse.StateActive || st.sim.PIN() != holderPIN || st.sim.Tries() != st.maxTries() {
			t.Fatalf("pull after %d: state %s, PIN set %v, tries %d", i, st.sim.State(), st.sim.PIN() == holderPIN, st.sim.Tries())
		}
	}
	st.leakCheck(nil, holderPIN)
}

// reinsertIfPulled cancels a pull that did not happen yet, or puts back a
// card pulled right after the operation's last APDU.
func (st *station) reinsertIfPulled(due bool) {
	if !due {
		st.vc.Slot.RemoveAfter(-1)
		return
	}
	// Pulled for sure: the pull armed after the last APDU happens when
	// vpcd next talks to the card, which may be the reset the transaction
	// ends with (after a PIN command) or a presence poll.
	st.vc.Slot.Remove()
	st.vc.WaitPresence(false, 10e9)
	st.vc.Slot.Insert()
	st.reconnect()
}

// The hardest pull: the card carries out a command and is pulled before
// its answer leaves, at every APDU of an activation and of a
// personalization with lock. The resume must neither spend a PIN try nor
// fail on a step the card already did (FINALIZE, CHANGE PIN), must spend
// at most one PIN try (only when the lost answer was CHANGE PIN's), and
// must end complete.
func TestAnswerLostAtEveryAPDU(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the full fault sweep takes a while")
	}
	t.Run("activate", func(t *testing.T) {
		st := newStation(t, "delivered-v2")
		before := st.vc.Slot.Stats().APDUs
		if _, _, err := st.activate("", holderPIN); err != nil {
			t.Fatal(err)
		}
		total := int(st.vc.Slot.Stats().APDUs - before)
		for i := 1; i <= total; i++ {
			st.freshCard("delivered-v2")
			st.vc.Slot.RemoveDuring(i)
			_, out, err := st.activate("", holderPIN)
			if !errors.Is(err, issuance.ErrInterrupted) {
				t.Fatalf("answer of APDU %d lost: %v", i, err)
			}
			st.vc.Slot.Insert()
			st.reconnect()
			res, out2, err := st.activate("", holderPIN)
			if err != nil || out2.Status != journal.StatusDone || !res.PINSet {
				t.Fatalf("answer of APDU %d lost (%s): resume: %v", i, out.StoppedAt, err)
			}
			// At most one try: only when the lost answer was CHANGE PIN's,
			// which the resume's CHANGE PIN from the initial PIN then finds
			// done (the card refuses the initial PIN).
			want := st.maxTries()
			if res.SetEarlier {
				want--
			}
			if st.sim.State() != ssse.StateActive || st.sim.PIN() != holderPIN || st.sim.Tries() != want || (res.SetEarlier && i != total) {
				t.Fatalf("answer of APDU %d lost: state %s, PIN set %v, tries %d, set earlier %v", i, st.sim.State(), st.sim.PIN() == holderPIN, st.sim.Tries(), res.SetEarlier)
			}
		}
	})
	t.Run("personalize", func(t *testing.T) {
		req := requestFor("ss-v3-sm4")
		st := newStation(t, "blank-v3")
		before := st.vc.Slot.Stats().APDUs
		if _, _, err := st.personalize("", req, true); err != nil {
			t.Fatal(err)
		}
		total := int(st.vc.Slot.Stats().APDUs - before)
		// The last few APDUs: the final UPDATE RECORDs, the read-back and FINALIZE.
		for i := total - 16; i <= total; i++ {
			st.freshCard("blank-v3")
			st.vc.Slot.RemoveDuring(i)
			_, out, err := st.personalize("", req, true)
			if !errors.Is(err, issuance.ErrInterrupted) {
				t.Fatalf("answer of APDU %d lost: %v", i, err)
			}
			st.vc.Slot.Insert()
			st.reconnect()
			if _, out2, err := st.personalize(out.OpID, req, true); err != nil || out2.Status != journal.StatusDone {
				t.Fatalf("answer of APDU %d lost (%s): resume: %v", i, out.StoppedAt, err)
			}
			if st.sim.State() != ssse.StateFinalized {
				t.Fatalf("answer of APDU %d lost: state %s", i, st.sim.State())
			}
			st.checkHolds(req)
		}
	})
}

// freshCard swaps a new card made from a built-in image into the reader:
// another card of the same batch, with its own identification code.
func (st *station) freshCard(image string) {
	st.t.Helper()
	st.vc.Slot.Remove()
	st.vc.WaitPresence(false, 10e9)
	st.fresh++
	sep := ":"
	if strings.Contains(image, ":") {
		sep = ","
	}
	st.sim = newSim(st.t, fmt.Sprintf("%s%sid%02d", image, sep, st.fresh%100), st.set)
	st.vc.Slot.SetCard(st.sim)
	st.vc.Slot.Insert()
	st.reconnect()
}
