// Package issuance runs the counter's multi-step card operations
// (personalize, lock, activate, block) with a journal: every step is
// recorded before and after it runs, a pulled card leaves an entry saying
// where it stopped, and the same card (by its identification code, in any
// reader) resumes the operation. A different card is never written with
// another person's data.
//
// An attempt ends in one of three ways: done; interrupted (resumable) when
// the card, the reader or the station went away, the context was
// cancelled, a journal write failed, or anything else left the outcome of
// a command unknown; failed only on a refusal known to have changed
// nothing (the card answered with an error status, or a check refused the
// request).
package issuance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/station/journal"
	"ssstation/station/secret"
)

// Runner ties card operations to the journal.
type Runner struct {
	Journal *journal.Store
	Set     *profiles.Set
	Opts    cardapp.Options
	// Secret keys the journal's digests (the request, the PIN a step in
	// flight sets): station/secret.Load(data_dir). Required.
	Secret *secret.Key
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

// ErrInterrupted wraps an attempt that stopped with the card's state not
// settled (card or reader gone, cancelled, journal not writable): the
// journal holds where; the same card resumes it.
var ErrInterrupted = errors.New("interrupted: the operation can resume when the same card is back")

// ErrOtherCard is returned when a resumed operation meets a card that is
// not the one it started on.
var ErrOtherCard = errors.New("this operation belongs to another card: nothing was written")

// ErrNotFirstPIN: a resumed PIN step was given another PIN than the one
// typed when it started. Nothing was sent; the operation stays resumable.
var ErrNotFirstPIN = errors.New("this is not the PIN typed when the activation started: type that one again (nothing was sent to the card)")

// ErrOtherRequest: the card has an unfinished operation of this kind with
// another request (other holder data).
var ErrOtherRequest = errors.New("the card has an unfinished operation of this kind with other data")

// Digest domains: a digest of one kind never stands for another.
const (
	domainRequest = "ssstation journal request v1"
	domainPIN     = "ssstation journal pin v1"
)

// digest is the journal's fingerprint of a request: HMAC-SHA256 of its
// JSON under the station secret. The journal keeps only this, never the
// holder's data, and without the secret it tells nothing about them.
func (r *Runner) digest(v any) (string, error) {
	if r.Secret == nil {
		return "", errors.New("issuance: no station secret (Runner.Secret)")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return r.Secret.MAC(domainRequest, b), nil
}

// pinCheck is the keyed digest of a PIN for one card.
func (r *Runner) pinCheck(cardID, pin string) string {
	return r.Secret.MAC(domainPIN, []byte(cardID+"\x00"+pin))
}

// transient reports failures after which the operation can resume: the
// card left, was reset, the reader or the service went away, or the
// reader was busy (another program held the card longer than we would
// wait: the command that met it was not sent, so the operation is
// interrupted where it stood, to retry later, never marked failed).
func transient(err error) bool {
	switch pcsc.KindOf(err) {
	case pcsc.KindCardRemoved, pcsc.KindCardReset, pcsc.KindReaderGone, pcsc.KindServiceGone, pcsc.KindUnresponsive, pcsc.KindNoCard,
		pcsc.KindBusy:
		return true
	}
	return false
}

// settled reports an error known to have changed nothing on the card: the
// card refused the command (a status word), or a check refused the
// request. Everything else (cancelled, card or reader gone, journal not
// writable, an error this code does not know) leaves the outcome unknown.
func settled(err error) bool {
	var je *cardapp.JournalError
	var ve *cardapp.ValidationError
	var sw apdu.StatusWord
	switch {
	case transient(err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &je), errors.Is(err, cardapp.ErrLastTry), errors.Is(err, ErrNotFirstPIN):
		return false
	case errors.As(err, &sw), errors.As(err, &ve), errors.Is(err, cardapp.ErrReadBackMismatch),
		errors.Is(err, keys.ErrNoProvider), errors.Is(err, cardapp.ErrCardNotGenuine),
		errors.Is(err, cardapp.ErrApplicationBlocked), errors.Is(err, cardapp.ErrAlreadyFinalized), errors.Is(err, cardapp.ErrAlreadyBlocked):
		return true
	}
	return false
}

// steps adapts a journal entry to cardapp.Steps.
type steps struct {
	r     *Runner
	entry *journal.Entry
}

func (st steps) Done(id string) bool    { return st.entry.StepDone(id) }
func (st steps) Pending(id string) bool { return st.entry.StepPending(id) }
func (st steps) Start(id string, index int, name string) error {
	return st.r.Journal.StepStarted(st.entry.Attempt(), id, index, name)
}
func (st steps) Finish(id string, detail string) error {
	return st.r.Journal.StepFinished(st.entry.Attempt(), id, detail)
}
func (st steps) RememberPIN(pin string) error {
	return st.r.Journal.SetPINCheck(st.entry.Attempt(), st.r.pinCheck(st.entry.CardID, pin))
}
func (st steps) ForgetPIN() error { return st.r.Journal.SetPINCheck(st.entry.Attempt(), "") }

// begin opens (or resumes) the journal entry of an operation on the
// identified card.
func (r *Runner) begin(cardID, kind, opID, reader, profile, digest string) (*journal.Entry, bool, error) {
	e, existed, err := r.Journal.Begin(journal.Entry{OpID: opID, Kind: kind, CardID: cardID,
		Reader: reader, Profile: profile, PayloadDigest: digest})
	if err != nil {
		if errors.Is(err, journal.ErrMismatch) && e == nil {
			if prev, gerr := r.Journal.Get(opID); gerr == nil && prev.CardID != cardID {
				return nil, false, fmt.Errorf("%w (operation %s started on card %s, the card in the reader is %s)", ErrOtherCard, opID, prev.CardID, cardID)
			}
		}
		return nil, false, err
	}
	return e, existed, nil
}

// unfinished returns the card's newest unfinished operation of that kind.
func (r *Runner) unfinished(cardID, kind string) (*journal.Entry, error) {
	pending, err := r.Journal.Unfinished(cardID)
	if err != nil {
		return nil, err
	}
	var last *journal.Entry
	for _, e := range pending {
		if e.Kind == kind {
			last = e
		}
	}
	return last, nil
}

// end records how the attempt ended.
func (r *Runner) end(e *journal.Entry, err error) (*Outcome, error) {
	at := e.Attempt()
	out := &Outcome{OpID: e.OpID}
	switch {
	case err == nil:
		if ferr := r.Journal.Finish(at, journal.StatusDone, nil); ferr != nil {
			// The card's work is done, the journal does not say so: the
			// entry stays unfinished, and a resume finds every step done.
			out.Status = journal.StatusInterrupted
			return out, fmt.Errorf("%w: recording the end: %w", ErrInterrupted, ferr)
		}
		out.Status = journal.StatusDone
		return out, nil
	case !settled(err):
		// A failed write (disk full) leaves the entry running: it is found
		// as unfinished all the same.
		_ = r.Journal.Interrupt(at, err)
		out.Status = journal.StatusInterrupted
		if e, gerr := r.Journal.Get(e.OpID); gerr == nil {
			out.StoppedAt = e.StoppedAt()
		}
		return out, fmt.Errorf("%w: %w", ErrInterrupted, err)
	default:
		if ferr := r.Journal.Finish(at, journal.StatusFailed, err); ferr != nil {
			_ = r.Journal.Interrupt(at, err)
			out.Status = journal.StatusInterrupted
			return out, fmt.Errorf("%w: %w (recording the failure: %w)", ErrInterrupted, err, ferr)
		}
		out.Status = journal.StatusFailed
		return out, err
	}
}

// early ends an attempt that stopped before its journal entry existed:
// nothing was written, and a card pulled (or a cancel) this early is still
// resumable (with the same operation id, which then simply starts).
func early(opID string, err error) (*Outcome, error) {
	if !settled(err) && !errors.Is(err, journal.ErrMismatch) && !errors.Is(err, journal.ErrFinished) &&
		!errors.Is(err, ErrOtherCard) && !errors.Is(err, ErrOtherRequest) {
		return &Outcome{OpID: opID, Status: journal.StatusInterrupted, StoppedAt: "before the first step: nothing was written"},
			fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return nil, err
}

// identify sends the first APDUs (reads only).
func (r *Runner) identify(ctx context.Context, s cardapp.Session) (*cardapp.App, string, error) {
	app, err := cardapp.Identify(ctx, s, r.Set, r.Opts)
	if err != nil {
		return nil, "", err
	}
	id, err := app.CardID(ctx)
	if err != nil {
		return nil, "", err
	}
	return app, fmt.Sprintf("%X", id), nil
}

// profileByATR is the profile the card's ATR points to, if any, for
// checking a request before any APDU is sent. A card whose ATR no profile
// lists is not refused for that: its request is checked after the reads
// that identify it, before anything is written.
func (r *Runner) profileByATR(s cardapp.Session) *profiles.Profile {
	if c := r.Set.MatchATR(s.ATR()); len(c) > 0 {
		return c[0]
	}
	return nil
}

// Personalize writes (and with lock, finalizes) the card. opID names the
// operation: a new one starts it, an interrupted one resumes it; without
// one, the card's unfinished personalization (found by its identification
// code) is resumed.
func (r *Runner) Personalize(ctx context.Context, s cardapp.Session, reader, opID string, req *cardapp.PersonalizeRequest, lock bool) (*cardapp.PersonalizeResult, *Outcome, error) {
	digest, err := r.digest(struct {
		Req  *cardapp.PersonalizeRequest
		Lock bool
	}{req, lock})
	if err != nil {
		return nil, nil, err
	}
	return r.withRequest(ctx, s, reader, opID, journal.KindPersonalize, digest, req, func(ctx context.Context, app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error) {
		return app.Personalize(ctx, req, lock, st)
	})
}

// Lock finalizes a personalized card after a read-back against req.
func (r *Runner) Lock(ctx context.Context, s cardapp.Session, reader, opID string, req *cardapp.PersonalizeRequest) (*cardapp.PersonalizeResult, *Outcome, error) {
	digest, err := r.digest(req)
	if err != nil {
		return nil, nil, err
	}
	return r.withRequest(ctx, s, reader, opID, journal.KindLock, digest, req, func(ctx context.Context, app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error) {
		return app.Lock(ctx, req, st)
	})
}

// withRequest is the frame of an operation carrying holder data: validate
// (against the profile the ATR names: no APDU yet), identify, validate
// against the identified profile, open or resume the journal entry, run,
// record the end.
func (r *Runner) withRequest(ctx context.Context, s cardapp.Session, reader, opID, kind, digest string, req *cardapp.PersonalizeRequest,
	run func(ctx context.Context, app *cardapp.App, st cardapp.Steps) (*cardapp.PersonalizeResult, error)) (*cardapp.PersonalizeResult, *Outcome, error) {
	if p := r.profileByATR(s); p != nil {
		if err := cardapp.ValidateRequest(p, req); err != nil {
			return nil, nil, err
		}
	}
	app, cardID, err := r.identify(ctx, s)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	if err := cardapp.ValidateRequest(app.Profile(), req); err != nil {
		return nil, nil, err
	}
	if opID == "" {
		prev, err := r.unfinished(cardID, kind)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case prev == nil:
			opID = journal.NewOpID()
		case prev.PayloadDigest != digest:
			return nil, nil, fmt.Errorf("%w: card %s, operation %s (%s): run it with its own holder file, or close it with `sscard journal abandon %s`",
				ErrOtherRequest, cardID, prev.OpID, prev.StoppedAt(), prev.OpID)
		default:
			opID = prev.OpID
		}
	}
	e, existed, err := r.begin(cardID, kind, opID, reader, app.Profile().Name, digest)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	res, err := run(ctx, app, steps{r, e})
	out, err := r.end(e, err)
	if out != nil {
		out.Resumed = existed
	}
	return res, out, err
}

// Activate activates a delivered card and sets the holder's PIN
// (cardapp.App.Activate). Without opID the card's unfinished activation is
// resumed; with none, a card whose journal shows an activation that set
// the PIN is reported already active without any PIN APDU. The PIN is
// never journaled: only its HMAC under the station secret while the PIN
// step is in flight, so that a resume after a lost answer can refuse,
// before any APDU, a PIN other than the one typed first.
func (r *Runner) Activate(ctx context.Context, s cardapp.Session, reader, opID, newPIN, confirm string) (*cardapp.ActivateResult, *Outcome, error) {
	if p := r.profileByATR(s); p != nil {
		if err := cardapp.CheckNewPIN(p, newPIN, confirm); err != nil {
			return nil, nil, err
		}
	}
	if r.Opts.Keys == nil {
		return nil, nil, fmt.Errorf("activate: proving the card genuine: %w", keys.ErrNoProvider)
	}
	digest, err := r.digest("activate")
	if err != nil {
		return nil, nil, err
	}
	app, cardID, err := r.identify(ctx, s)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	if err := cardapp.CheckNewPIN(app.Profile(), newPIN, confirm); err != nil {
		return nil, nil, err
	}
	if opID == "" {
		prev, err := r.unfinished(cardID, journal.KindActivate)
		if err != nil {
			return nil, nil, err
		}
		if prev != nil {
			opID = prev.OpID
		}
	}
	if _, err := r.Journal.Get(opID); opID == "" || errors.Is(err, journal.ErrNotFound) {
		// A new activation: first the journal's positive evidence, which
		// needs no APDU and spends no try.
		done, err := r.activatedBefore(cardID)
		if err != nil {
			return nil, nil, err
		}
		if done != nil {
			return &cardapp.ActivateResult{CardID: cardID, AlreadyActive: true, Evidence: "journal"},
				&Outcome{OpID: done.OpID, Status: journal.StatusDone}, nil
		}
		if opID == "" {
			opID = journal.NewOpID()
		}
	}
	e, existed, err := r.begin(cardID, journal.KindActivate, opID, reader, app.Profile().Name, digest)
	if err != nil {
		out, err := early(opID, err)
		return nil, out, err
	}
	if e.StepPending(cardapp.StepSetPIN.ID) {
		// The CHANGE PIN of an earlier attempt may have taken effect: only
		// the PIN typed then may go on, checked before any PIN APDU.
		var err error
		switch {
		case e.PINCheck == "":
			err = fmt.Errorf("%w (the journal holds no check of it)", ErrNotFirstPIN)
		case !r.Secret.Equal(domainPIN, []byte(cardID+"\x00"+newPIN), e.PINCheck):
			err = ErrNotFirstPIN
		}
		if err != nil {
			out, err := r.end(e, err)
			if out != nil {
				out.Resumed = existed
			}
			return nil, out, err
		}
	}
	res, err := app.Activate(ctx, newPIN, confirm, steps{r, e})
	out, err := r.end(e, err)
	if out != nil {
		out.Resumed = existed
	}
	return res, out, err
}

// activatedBefore returns the card's finished activation whose PIN step is
// done, if any.
func (r *Runner) activatedBefore(cardID string) (*journal.Entry, error) {
	all, err := r.Journal.ByCard(cardID)
	if err != nil {
		return nil, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if e := all[i]; e.Kind == journal.KindActivate && e.Status == journal.StatusDone && e.StepDone(cardapp.StepSetPIN.ID) {
			return e, nil
		}
	}
	return nil, nil
}

// Block blocks a card reported lost. A BLOCK whose answer was lost and
// that finds the card blocked the way it asks is done. Without opID the
// card's unfinished block is resumed.
func (r *Runner) Block(ctx context.Context, s cardapp.Session, reader, opID string, kind cardapp.BlockKind) (*Outcome, error) {
	digest, err := r.digest(kind)
	if err != nil {
		return nil, err
	}
	app, cardID, err := r.identify(ctx, s)
	if err != nil {
		if cardapp.BlockedAs(kind, err) && opID != "" {
			return r.blockedUnreadable(opID, kind, digest, err)
		}
		return early(opID, err)
	}
	if opID == "" {
		prev, err := r.unfinished(cardID, journal.KindBlock)
		if err != nil {
			return nil, err
		}
		if prev != nil && prev.PayloadDigest == digest {
			opID = prev.OpID
		} else {
			opID = journal.NewOpID()
		}
	}
	e, _, err := r.begin(cardID, journal.KindBlock, opID, reader, app.Profile().Name, digest)
	if err != nil {
		return early(opID, err)
	}
	st := steps{r, e}
	step := cardapp.StepBlock(kind)
	lost := st.Pending(step.ID)
	if st.Done(step.ID) {
		return r.end(e, nil)
	}
	err = st.Start(step.ID, 1, step.Name)
	if err != nil {
		err = &cardapp.JournalError{Err: err}
	} else {
		var detail string
		detail, err = app.BlockOnce(ctx, kind, lost)
		if err == nil {
			if ferr := st.Finish(step.ID, detail); ferr != nil {
				err = &cardapp.JournalError{Err: ferr}
			}
		}
	}
	return r.end(e, err)
}

// blockedUnreadable ends a block resumed on a card that answers blocked
// the way the block asks (permanently, or the whole card) and so can no
// longer be identified: only for the operation named by the technician,
// whose BLOCK was sent and its answer lost.
func (r *Runner) blockedUnreadable(opID string, kind cardapp.BlockKind, digest string, cause error) (*Outcome, error) {
	prev, err := r.Journal.Get(opID)
	if err != nil || prev.Kind != journal.KindBlock || prev.PayloadDigest != digest || !prev.StepPending(cardapp.StepBlock(kind).ID) {
		return early(opID, cause)
	}
	e, _, err := r.Journal.Begin(journal.Entry{OpID: prev.OpID, Kind: prev.Kind, CardID: prev.CardID, PayloadDigest: digest})
	if err != nil {
		return early(opID, err)
	}
	st := steps{r, e}
	step := cardapp.StepBlock(kind)
	if err := st.Start(step.ID, 1, step.Name); err != nil {
		return r.end(e, &cardapp.JournalError{Err: err})
	}
	if err := st.Finish(step.ID, "blocked in the interrupted attempt (the card answers blocked and can no longer be identified)"); err != nil {
		return r.end(e, &cardapp.JournalError{Err: err})
	}
	return r.end(e, nil)
}
