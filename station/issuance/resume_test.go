package issuance_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"ssstation/cardapp"
	"ssstation/internal/cardsim/ssse"
	"ssstation/station/issuance"
	"ssstation/station/journal"
)

// A station that stopped after FINALIZE was recorded done but before the
// operation was (a crash, a full disk): the resume skips FINALIZE instead
// of sending it again (the card would refuse it, 6985, and the operation
// would end failed).
func TestResumeSkipsFinalizeDone(t *testing.T) {
	req := requestFor("ss-v3-sm4")
	st := newStation(t, "blank-v3")
	// A clean run on one card gives the plan's steps.
	_, out, err := st.personalize("", req, true)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := st.runner.Journal.Get(out.OpID)

	// Another card of the batch: an attempt pulled early creates its entry.
	st.freshCard("blank-v3")
	st.vc.Slot.RemoveAfter(3)
	_, out, err = st.personalize("", req, true)
	if !errors.Is(err, issuance.ErrInterrupted) {
		t.Fatalf("first attempt: %v", err)
	}
	st.vc.Slot.Insert()
	st.reconnect()
	// The card is personalized and finalized, and the journal records
	// every step done, FINALIZE included, with the operation unfinished:
	// what a crash right after the last step leaves.
	err = st.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, st.card, st.set, st.runner.Opts)
		if err != nil {
			return err
		}
		_, err = app.Personalize(ctx, req, true, nil)
		return err
	})
	if err != nil || st.sim.State() != ssse.StateFinalized {
		t.Fatalf("personalize without journal: %v %s", err, st.sim.State())
	}
	e, _ := st.runner.Journal.Get(out.OpID)
	e, _, err = st.runner.Journal.Begin(journal.Entry{OpID: e.OpID, Kind: e.Kind, CardID: e.CardID, PayloadDigest: e.PayloadDigest})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.Steps {
		if err := st.runner.Journal.StepStarted(e.Attempt(), s.ID, s.Index, s.Name); err != nil {
			t.Fatal(err)
		}
		if err := st.runner.Journal.StepFinished(e.Attempt(), s.ID, s.Detail); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.runner.Journal.Interrupt(e.Attempt(), errors.New("station stopped")); err != nil {
		t.Fatal(err)
	}

	res, out2, err := st.personalize("", req, true)
	if err != nil || out2.Status != journal.StatusDone || out2.OpID != out.OpID || !res.Locked {
		t.Fatalf("resume: %v %+v %+v", err, out2, res)
	}
	st.checkHolds(req)
}

// A BLOCK carried out whose answer was lost: the resume finds the
// application blocked and ends done, without another BLOCK.
func TestBlockAnswerLostThenDone(t *testing.T) {
	st := newStation(t, "sample-v2")
	block := func(opID string) (*issuance.Outcome, error) {
		var out *issuance.Outcome
		err := st.card.Transaction(context.Background(), func(ctx context.Context) (err error) {
			out, err = st.runner.Block(ctx, st.card, st.card.Reader(), opID, cardapp.BlockTemporary)
			return
		})
		return out, err
	}
	// A clean block on one card counts the APDUs: BLOCK is the last.
	before := st.vc.Slot.Stats().APDUs
	if _, err := block(""); err != nil {
		t.Fatal(err)
	}
	last := int(st.vc.Slot.Stats().APDUs - before)

	st.freshCard("sample-v2")
	st.vc.Slot.RemoveDuring(last)
	out, err := block("")
	if !errors.Is(err, issuance.ErrInterrupted) || st.sim.State() != ssse.StateBlockedTemporary {
		t.Fatalf("answer lost: %v, state %s", err, st.sim.State())
	}
	st.vc.Slot.Insert()
	st.reconnect()
	out2, err := block("")
	if err != nil || out2.Status != journal.StatusDone || out2.OpID != out.OpID {
		t.Fatalf("resume: %v %+v", err, out2)
	}
	e, _ := st.runner.Journal.Get(out.OpID)
	if s, _ := e.Step(cardapp.StepBlock(cardapp.BlockTemporary).ID); !strings.Contains(s.Detail, "interrupted attempt") {
		t.Fatalf("step: %+v", s)
	}
	// A card blocked already, with no lost answer to explain it, is a
	// refusal: failed, nothing changed.
	out3, err := block("")
	if !errors.Is(err, cardapp.ErrAlreadyBlocked) || out3.Status != journal.StatusFailed {
		t.Fatalf("block a blocked card: %v %+v", err, out3)
	}
}

// Without --op, personalize resumes the card's unfinished personalization
// with the same data, and refuses to start another with other data.
func TestPersonalizeWithoutOpResumesTheCards(t *testing.T) {
	req := requestFor("ss-v2-3des-t0")
	st := newStation(t, "blank-v2")
	st.vc.Slot.RemoveAfter(12)
	_, out, err := st.personalize("", req, true)
	if !errors.Is(err, issuance.ErrInterrupted) {
		t.Fatalf("first attempt: %v", err)
	}
	st.vc.Slot.Insert()
	st.reconnect()

	other := requestFor("ss-v2-3des-t0")
	other.Card.CardNumber = "Z99999999"
	before := st.sim.APDUCount()
	_, _, err = st.personalize("", other, true)
	if !errors.Is(err, issuance.ErrOtherRequest) || !strings.Contains(err.Error(), out.OpID) {
		t.Fatalf("other data: %v", err)
	}
	if st.sim.State() == ssse.StateFinalized {
		t.Fatal("written with other data")
	}
	t.Logf("other data refused after %d identification APDUs", st.sim.APDUCount()-before)

	res, out2, err := st.personalize("", req, true)
	if err != nil || out2.OpID != out.OpID || !out2.Resumed || !res.Locked {
		t.Fatalf("resume without --op: %v %+v", err, out2)
	}
	st.checkHolds(req)
}

// "belongs to another card" names both cards in full.
func TestOtherCardShowsFullIDs(t *testing.T) {
	st := newStation(t, "blank-v2")
	req := requestFor("ss-v2-3des-t0")
	st.vc.Slot.RemoveAfter(14)
	_, out, err := st.personalize("", req, true)
	if !errors.Is(err, issuance.ErrInterrupted) {
		t.Fatal(err)
	}
	first := strings.ToUpper(strings.ReplaceAll(st.sim.Image().CardID, " ", ""))
	st.freshCard("blank-v2")
	second := strings.ToUpper(strings.ReplaceAll(st.sim.Image().CardID, " ", ""))
	_, _, err = st.personalize(out.OpID, req, true)
	if !errors.Is(err, issuance.ErrOtherCard) || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), second) {
		t.Fatalf("another card: %v (want %s and %s)", err, first, second)
	}
}
