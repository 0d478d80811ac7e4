package issuance_test

import (
	"context"
	"errors"
	"testing"

	"ssstation/cardapp"
	"ssstation/internal/cardsim/ssse"
	"ssstation/station/issuance"
	"ssstation/station/journal"
)

// activateWith runs one activation with its own context and a progress
// hook (called as each step starts, before its first APDU).
func (st *station) activateWith(ctx context.Context, opID, pin string, progress cardapp.Progress) (*cardapp.ActivateResult, *issuance.Outcome, error) {
	var res *cardapp.ActivateResult
	var out *issuance.Outcome
	if progress != nil {
		ctx = cardapp.WithProgress(ctx, progress)
	}
	err := st.card.Transaction(context.Background(), func(_ context.Context) error {
		var err error
		res, out, err = st.runner.Activate(ctx, st.card, st.card.Reader(), opID, pin, pin)
		return err
	})
	if err != nil {
		st.log.add(err.Error())
	}
	return res, out, err
}

func (st *station) maxTries() int { return st.sim.Profile().PIN.Tries }

// A delivered card holding the initial PIN is proven genuine and its PIN
// changed to the holder's, without any APPLICATION UNBLOCK; activating it
// again gives "PIN already set" from the journal, with no PIN APDU and no
// try spent.
func TestActivateCardHoldingInitialPIN(t *testing.T) {
	for _, image := range []string{"delivered-v2", "delivered-v3"} {
		t.Run(image, func(t *testing.T) {
			st := newStation(t, image)
			res, out, err := st.activate("", holderPIN)
			if err != nil {
				t.Fatal(err)
			}
			if res.AlreadyActive || res.Unblocked || !res.PINSet || out.Status != journal.StatusDone {
				t.Fatalf("%+v %+v", res, out)
			}
			if st.sim.State() != ssse.StateActive || st.sim.PIN() != holderPIN || st.sim.Tries() != st.maxTries() {
				t.Fatalf("card state %s, PIN set %v, tries %d", st.sim.State(), st.sim.PIN() == holderPIN, st.sim.Tries())
			}
			e, _ := st.runner.Journal.Get(out.OpID)
			if e.PINCheck != "" || !e.StepDone(cardapp.StepSetPIN.ID) || !e.StepDone(cardapp.StepVerifyGenuine.ID) {
				t.Fatalf("journal: %+v", e)
			}

			// Again, another PIN typed: the journal knows; nothing but the
			// identification reads reaches the card.
			before := st.sim.APDUCount()
			res, out2, err := st.activate("", "739105")
			if err != nil || !res.AlreadyActive || res.Evidence != "journal" || res.PINSet || out2.OpID != out.OpID {
				t.Fatalf("second activation: %+v %+v %v", res, out2, err)
			}
			if st.sim.PIN() != holderPIN || st.sim.Tries() != st.maxTries() {
				t.Fatalf("the second activation spent a try or changed the PIN: tries %d", st.sim.Tries())
			}
			t.Logf("second activation: %d APDUs (identification reads only)", st.sim.APDUCount()-before)
			// With a new operation id the journal knows all the same.
			res, _, err = st.activate("counter-7-op-2", "739105")
			if err != nil || !res.AlreadyActive || res.Evidence != "journal" || st.sim.Tries() != st.maxTries() {
				t.Fatalf("new --op: %+v %v, tries %d", res, err, st.sim.Tries())
			}
			st.leakCheck(nil, holderPIN, "739105")
		})
	}
}

// A card whose PIN its holder set already, unknown to this journal: the
// card's refusal of the initial PIN is the evidence, and the tries left
// are reported.
func TestActivateCardWithPINSetElsewhere(t *testing.T) {
	st := newStation(t, "delivered-v3:pin")
	res, out, err := st.activate("", holderPIN)
	if err != nil || !res.AlreadyActive || res.Evidence != "card" || res.PINSet || out.Status != journal.StatusDone {
		t.Fatalf("%+v %+v %v", res, out, err)
	}
	if res.TriesLeft == nil || *res.TriesLeft != st.maxTries()-1 || st.sim.Tries() != st.maxTries()-1 {
		t.Fatalf("tries reported %v, card %d", res.TriesLeft, st.sim.Tries())
	}
	if st.sim.PIN() == holderPIN {
		t.Fatal("the PIN was changed")
	}
}

// With one PIN try left the station does not guess: nothing PIN-bearing is
// sent, the card keeps its initial PIN and its last try, and the operation
// stays resumable (never failed while the card may hold 123456).
func TestActivateOneTryLeftDoesNotGuess(t *testing.T) {
	st := newStation(t, "delivered-v3:tries1")
	_, out, err := st.activate("", holderPIN)
	if !errors.Is(err, cardapp.ErrLastTry) || !errors.Is(err, issuance.ErrInterrupted) || out.Status != journal.StatusInterrupted {
		t.Fatalf("%v %+v", err, out)
	}
	if st.sim.Tries() != 1 || st.sim.PIN() != "123456" {
		t.Fatalf("tries %d", st.sim.Tries())
	}
}

// A transport-locked card meets a profile whose cards are not delivered
// so: it is refused and nothing changes (no APPLICATION UNBLOCK).
func TestActivateBlockedApplicationRefused(t *testing.T) {
	st := newStation(t, "transport-locked-v3")
	_, out, err := st.activate("", holderPIN)
	if !errors.Is(err, cardapp.ErrApplicationBlocked) || out.Status != journal.StatusFailed {
		t.Fatalf("%v %+v", err, out)
	}
	if st.sim.State() != ssse.StateTransportLocked || st.sim.PIN() != "123456" || st.sim.Tries() != st.maxTries() {
		t.Fatalf("state %s tries %d", st.sim.State(), st.sim.Tries())
	}
}

// The initial PIN is refused as the holder's PIN, before any APDU.
func TestActivateRefusesInitialPIN(t *testing.T) {
	st := newStation(t, "delivered-v3")
	before := st.sim.APDUCount()
	if _, _, err := st.activate("", "123456"); !errors.Is(err, cardapp.ErrPINInitial) {
		t.Fatalf("initial PIN as the new one: %v", err)
	}
	if n := st.sim.APDUCount() - before; n != 0 || st.sim.PIN() != "123456" {
		t.Fatalf("%d APDUs", n)
	}
}

// Cancelled (Ctrl-C, SIGTERM) as each step starts: the activation is
// interrupted, never failed, and the resume completes with no try spent.
func TestActivateCancelledAtEachStepResumes(t *testing.T) {
	st := newStation(t, "delivered-v2")
	steps := len(st.sim.Profile().Activation.Steps)
	for k := 1; k <= steps; k++ {
		st.freshCard("delivered-v2")
		ctx, cancel := context.WithCancel(context.Background())
		_, out, err := st.activateWith(ctx, "", holderPIN, func(i, n int, step string) {
			if i == k {
				cancel()
			}
		})
		cancel()
		if !errors.Is(err, issuance.ErrInterrupted) || !errors.Is(err, context.Canceled) || out.Status != journal.StatusInterrupted {
			t.Fatalf("cancelled at step %d: %v %+v", k, err, out)
		}
		if e, _ := st.runner.Journal.Get(out.OpID); e.Status != journal.StatusInterrupted {
			t.Fatalf("cancelled at step %d: journal says %s", k, e.Status)
		}
		res, out2, err := st.activate("", holderPIN)
		if err != nil || !res.PINSet || out2.OpID != out.OpID || !out2.Resumed {
			t.Fatalf("cancelled at step %d: resume %+v %+v %v", k, res, out2, err)
		}
		if st.sim.PIN() != holderPIN || st.sim.Tries() != st.maxTries() {
			t.Fatalf("cancelled at step %d: tries %d", k, st.sim.Tries())
		}
	}
}

// A journal write that fails mid-operation (here: another worker took the
// entry over, the journal refuses this one's writes as it refuses a full
// disk's) leaves the activation interrupted, never failed.
func TestActivateJournalWriteFailureIsInterrupted(t *testing.T) {
	st := newStation(t, "delivered-v3")
	_, out, err := st.activateWith(context.Background(), "", holderPIN, func(i, n int, step string) {
		if step != cardapp.StepSetPIN.Name {
			return
		}
		// A second Begin: this attempt's token is stale from now on.
		ids, _ := st.runner.Journal.List(1)
		e := ids[0]
		if _, _, err := st.runner.Journal.Begin(journal.Entry{OpID: e.OpID, Kind: e.Kind, CardID: e.CardID, PayloadDigest: e.PayloadDigest}); err != nil {
			t.Error(err)
		}
	})
	var je *cardapp.JournalError
	if !errors.Is(err, issuance.ErrInterrupted) || !errors.As(err, &je) || !errors.Is(err, journal.ErrStale) || out.Status != journal.StatusInterrupted {
		t.Fatalf("%v %+v", err, out)
	}
	if st.sim.PIN() != "123456" {
		t.Fatal("the PIN changed although its step could not be recorded")
	}
	e, _ := st.runner.Journal.Get(out.OpID)
	if !e.Status.Unfinished() {
		t.Fatalf("journal: %s", e.Status)
	}
}

// The CHANGE PIN is carried out and its answer lost. The resume asks for
// the PIN typed the first time: another one is refused before any APDU
// reaches the PIN; the right one completes with at most one try spent,
// and none when the card has one left (it then stays resumable).
func TestResumedPINStepAfterLostAnswer(t *testing.T) {
	st := newStation(t, "delivered-v3")
	// Find the CHANGE PIN's APDU: the last of a clean activation.
	before := st.vc.Slot.Stats().APDUs
	if _, _, err := st.activate("", holderPIN); err != nil {
		t.Fatal(err)
	}
	last := int(st.vc.Slot.Stats().APDUs - before)

	st.freshCard("delivered-v3")
	st.vc.Slot.RemoveDuring(last)
	_, out, err := st.activate("", holderPIN)
	if !errors.Is(err, issuance.ErrInterrupted) || st.sim.PIN() != holderPIN {
		t.Fatalf("lost answer: %v, PIN set %v", err, st.sim.PIN() == holderPIN)
	}
	st.vc.Slot.Insert()
	st.reconnect()
	e, _ := st.runner.Journal.Get(out.OpID)
	if !e.StepPending(cardapp.StepSetPIN.ID) || e.PINCheck == "" {
		t.Fatalf("journal after the lost answer: %+v", e)
	}

	// Another PIN: refused, nothing sent after the identification reads.
	tries := st.sim.Tries()
	_, out2, err := st.activate("", "739105")
	if !errors.Is(err, issuance.ErrNotFirstPIN) || out2.Status != journal.StatusInterrupted || out2.OpID != out.OpID {
		t.Fatalf("other PIN on resume: %v %+v", err, out2)
	}
	if st.sim.Tries() != tries || st.sim.PIN() != holderPIN {
		t.Fatalf("other PIN on resume spent a try: %d -> %d", tries, st.sim.Tries())
	}

	// One try left (the holder tried PINs at a terminal meanwhile): no guess.
	saved := st.sim.Tries()
	for st.sim.Tries() > 1 {
		wrongVerify(t, st)
	}
	_, _, err = st.activate("", holderPIN)
	if !errors.Is(err, cardapp.ErrLastTry) || st.sim.Tries() != 1 {
		t.Fatalf("one try left: %v, tries %d", err, st.sim.Tries())
	}
	// A right VERIFY restores the counter (the holder at a bank counter).
	rightVerify(t, st)
	if st.sim.Tries() != saved {
		t.Fatalf("tries %d after a right PIN", st.sim.Tries())
	}

	// The PIN typed first: done, at most one try spent.
	res, out3, err := st.activate("", holderPIN)
	if err != nil || !res.PINSet || !res.SetEarlier || out3.OpID != out.OpID || out3.Status != journal.StatusDone {
		t.Fatalf("resume: %+v %+v %v", res, out3, err)
	}
	if st.sim.PIN() != holderPIN || st.sim.Tries() < st.maxTries()-1 {
		t.Fatalf("resume: tries %d of %d", st.sim.Tries(), st.maxTries())
	}
	if e, _ := st.runner.Journal.Get(out.OpID); e.PINCheck != "" {
		t.Fatal("the PIN check outlived the step")
	}
	st.leakCheck(nil, holderPIN, "739105")
}

func wrongVerify(t *testing.T, st *station) {
	t.Helper()
	err := st.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, st.card, st.set, st.runner.Opts)
		if err != nil {
			return err
		}
		return app.VerifyPIN(ctx, "999999")
	})
	var wp *cardapp.WrongPIN
	if !errors.As(err, &wp) {
		t.Fatalf("wrong VERIFY: %v", err)
	}
}

func rightVerify(t *testing.T, st *station) {
	t.Helper()
	err := st.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, st.card, st.set, st.runner.Opts)
		if err != nil {
			return err
		}
		return app.VerifyPIN(ctx, holderPIN)
	})
	if err != nil {
		t.Fatalf("right VERIFY: %v", err)
	}
}
