// Package issuance runs the counter's multi-step card operations
// (personalize, lock, activate, block) with a journal: every step is
// recorded before and after it runs, a pulled card leaves an entry saying
// where it stopped, and the same card (by its identification code, in any
// reader) resumes the operation. A different card is never written with
// another person's data.
package issuance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"ssstation/cardapp"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/station/journal"
)

// Runner ties card operations to the journal.
type Runner struct {
	Journal *journal.Store
	Set     *profiles.Set
	Opts    cardapp.Options
}

// Outcome is the end of one attempt at an operation.
type Outcome struct {
	OpID   string         `json:"op_id"`
	Status journal.Status `json:"status"`
	// Resumed: this attempt continued an earlier, interrupted one.
	Resumed bool `json:"resumed"`
	// StoppedAt says where an interrupted attempt stopped.
	StoppedAt string `json:"stopped_at,omitempty"`
}

// ErrInterrupted wraps an attempt that stopped because the card or the
// reader went away: the journal holds where; the same card resumes it.
var ErrInterrupted = errors.New("interrupted: the operation can resume when the same card is back")

// ErrOtherCard is returned when a resumed operation meets a card that is
// not the one it started on.
var ErrOtherCard = errors.New("this operation belongs to another card: nothing was written")

// Digest is the journal's fingerprint of a request: SHA-256 of its JSON.
// The journal keeps only this, never the holder's data.
func Digest(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// transient reports failures after which the operation can resume: the
// card left, was reset, the reader or the service went away.
func transient(err error) bool {
	switch pcsc.KindOf(err) {
	case pcsc.KindCardRemoved, pcsc.KindCardReset, pcsc.KindReaderGone, pcsc.KindServiceGone, pcsc.KindUnresponsive, pcsc.KindNoCard:
		return true
	}
	return false
}

// steps adapts a journal entry to cardapp.Steps.
type steps struct {
	s     *journal.Store
	entry *journal.Entry
}

func (st steps) Done(step string) bool { return st.entry.StepDone(step) }
func (st steps) Pending(step string) bool {
	s, ok := st.entry.Step(step)
	return ok && s.State == journal.StateStarted
}
func (st steps) Start(step string, index int) error {
	return st.s.StepStarted(st.entry.OpID, step, index)
}
func (st steps) Finish(step string, index int, detail string) error {
	return st.s.StepFinished(st.entry.OpID, step, index, detail)
}

// begin opens (or resumes) the journal entry of an operation on the
// identified card.
func (r *Runner) begin(ctx context.Context, app *cardapp.App, kind, opID, reader, digest string) (*journal.Entry, bool, error) {
	id, err := app.CardID(ctx)
	if err != nil {
		return nil, false, err
	}
	e, existed, err := r.Journal.Begin(journal.Entry{OpID: opID, Kind: kind, CardID: fmt.Sprintf("%X", id),
		Reader: reader, Profile: app.Profile().Name, PayloadDigest: digest})
	if err != nil {
		if errors.Is(err, journal.ErrMismatch) && e == nil {
			if prev, gerr := r.Journal.Get(opID); gerr == nil && prev.CardID != fmt.Sprintf("%X", id) {
				return nil, false, fmt.Errorf("%w (operation %s started on card %s…, the card in the reader is %X…)", ErrOtherCard, opID, prev.CardID[:8], id[:4])
			}
		}
		return nil, false, err
	}
	return e, existed, nil
}

// end records how the attempt ended.
func (r *Runner) end(opID string, err error) (*Outcome, error) {
	out := &Outcome{OpID: opID}
	switch {
	case err == nil:
		if ferr := r.Journal.Finish(opID, journal.StatusDone, nil); ferr != nil {
			return nil, ferr
		}
		out.Status = journal.StatusDone
		return out, nil
	case transient(err):
		_ = r.Journal.Interrupt(opID, err)
		out.Status = journal.StatusInterrupted
		if e, gerr := r.Journal.Get(opID); gerr == nil {
			out.StoppedAt = e.StoppedAt()
		}
		return out, fmt.Errorf("%w: %w", ErrInterrupted, err)
	default:
		_ = r.Journal.Finish(opID, journal.StatusFailed, err)
		out.Status = journal.StatusFailed
		return out, err
	}
}

// early ends an attempt that failed before its journal entry existed:
// nothing was written, and a card pulled this early is still resumable
// (with the same operation id, which then simply starts).
func early(opID string, err error) (*Outcome, error) {
	if transient(err) {
		return &Outcome{OpID: opID, Status: journal.StatusInterrupted, StoppedAt: "before the first step: nothing was written"},
			fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return nil, err
}

// identify validates nothing and sends the first APDUs: it is called only
// after the request passed validation.
func (r *Runner) identify(ctx context.Context, s cardapp.Session) (*cardapp.App, error) {
	return cardapp.Identify(ctx, s, r.Set, r.Opts)
}

// profileByATR is the profile the card's ATR points to, for validating a
// request before any APDU is sent.
func (r *Runner) profileByATR(s cardapp.Session) (*profiles.Profile, error) {
	c := r.Set.MatchATR(s.ATR())
	if len(c) == 0 {
		return nil, &cardapp.UnknownCardError{ATR: s.ATR(), Reason: "no firmware profile matches its ATR"}
	}
	return c[0], nil
}

// Personalize writes (and with lock, finalizes) the card. opID names the
// operation: a new one starts it, an interrupted one resumes it. The
// request is validated before any APDU is sent.
func (r *Runner) Personalize(ctx context.Context, s cardapp.Session, reader, opID string, req *cardapp.PersonalizeRequest, lock bool) (*cardapp.PersonalizeResult, *Outcome, error) {
	digest := Digest(struct {
		Req  *cardapp.PersonalizeRequest
		Lock bool
	}{req, lock})
	return r.withRequest(ctx, s, reader, opID, journal.KindPersonalize, digest, req, func(app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error) {
		return app.Personalize(ctx, req, lock, st)
	})
}

// Lock finalizes a personalized card after a read-back against req.
func (r *Runner) Lock(ctx context.Context, s cardapp.Session, reader, opID string, req *cardapp.PersonalizeRequest) (*cardapp.PersonalizeResult, *Outcome, error) {
	return r.withRequest(ctx, s, reader, opID, journal.KindLock, Digest(req), req, func(app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error) {
		return app.Lock(ctx, req, st)
	})
}

// withRequest is the frame of an operation carrying holder data: validate
// against the profile the ATR names (no APDU yet), identify, open or
// resume the journal entry, run, record the end.
func (r *Runner) withRequest(ctx context.Context, s cardapp.Session, reader, opID, kind, digest string, req *cardapp.PersonalizeRequest,
	run func(app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error)) (*cardapp.PersonalizeResult, *Outcome, error) {
	p, err := r.profileByATR(s)
	if err != nil {
		return nil, nil, err
	}
	if err := cardapp.ValidateRequest(p, req); err != nil {
		return nil, nil, err
	}
	if opID == "" {
		opID = journal.NewOpID()
	}
	app, err := r.identify(ctx, s)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	e, existed, err := r.begin(ctx, app, kind, opID, reader, digest)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	res, err := run(app, steps{r.Journal, e})
	out, err := r.end(e.OpID, err)
	if out != nil {
		out.Resumed = existed
	}
	return res, out, err
}

// Activate activates a delivered card and sets the holder's PIN. The PIN
// is never journaled, not even as a digest (six digits are guessed from a
// hash in a moment): a resumed activation asks the holder again.
func (r *Runner) Activate(ctx context.Context, s cardapp.Session, reader, opID, newPIN, confirm string) (*cardapp.ActivateResult, *Outcome, error) {
	p, err := r.profileByATR(s)
	if err != nil {
		return nil, nil, err
	}
	if err := cardapp.CheckNewPIN(p, newPIN, confirm); err != nil {
		return nil, nil, err
	}
	app, err := r.identify(ctx, s)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	id, err := app.CardID(ctx)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	// An unfinished activation of this card, in any reader, is resumed.
	resume := false
	if opID == "" {
		if pending, err := r.Journal.Unfinished(fmt.Sprintf("%X", id)); err == nil {
			for _, e := range pending {
				if e.Kind == journal.KindActivate {
					opID, resume = e.OpID, true
				}
			}
		}
	}
	if opID == "" {
		opID = journal.NewOpID()
	}
	e, existed, err := r.begin(ctx, app, journal.KindActivate, opID, reader, Digest("activate"))
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	res, err := app.Activate(ctx, newPIN, confirm, steps{r.Journal, e}, resume || existed)
	out, err := r.end(e.OpID, err)
	if out != nil {
		out.Resumed = existed
	}
	return res, out, err
}

// Block blocks a card reported lost.
func (r *Runner) Block(ctx context.Context, s cardapp.Session, reader, opID string, kind cardapp.BlockKind) (*Outcome, error) {
	if opID == "" {
		opID = journal.NewOpID()
	}
	app, err := r.identify(ctx, s)
	if err != nil {
		return early(opID, err)
	}
	e, _, err := r.begin(ctx, app, journal.KindBlock, opID, reader, Digest(kind))
	if err != nil {
		return early(opID, err)
	}
	err = steps{r.Journal, e}.Start("block "+string(kind), 1)
	if err == nil {
		err = app.Block(ctx, kind)
		if err == nil {
			err = steps{r.Journal, e}.Finish("block "+string(kind), 1, "")
		}
	}
	return r.end(e.OpID, err)
}
