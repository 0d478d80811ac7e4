package cardapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// Steps records the progress of a multi-step operation so that a card
// pulled at any step can resume: station/issuance implements it over
// station/journal. Steps are named by a stable ID (e.g. "update:EF06:2")
// and shown by a display name. Start is recorded before a step runs and
// Finish after; Done reports a step finished in an earlier attempt of the
// same operation, Pending one started and never finished.
type Steps interface {
	Done(id string) bool
	// Pending reports a step started in an earlier attempt and never
	// finished: the card may or may not have carried it out.
	Pending(id string) bool
	Start(id string, index int, name string) error
	Finish(id string, detail string) error
	// RememberPIN keeps a keyed digest of a PIN the next step sets, so
	// that a resume after a lost answer can tell the same PIN is typed
	// again; ForgetPIN drops it once the step settled.
	RememberPIN(pin string) error
	ForgetPIN() error
}

// noSteps is the journal of an operation nobody records.
type noSteps struct{}

func (noSteps) Done(string) bool                { return false }
func (noSteps) Pending(string) bool             { return false }
func (noSteps) Start(string, int, string) error { return nil }
func (noSteps) Finish(string, string) error     { return nil }
func (noSteps) RememberPIN(string) error        { return nil }
func (noSteps) ForgetPIN() error                { return nil }
func stepsOrNone(s Steps) Steps {
	if s == nil {
		return noSteps{}
	}
	return s
}

// JournalError is a failure to record a step (a full disk, a journal
// taken over by another attempt): the card's state is then not what the
// journal says, so the operation is interrupted, never failed.
type JournalError struct{ Err error }

func (e *JournalError) Error() string { return "journal: " + e.Err.Error() }
func (e *JournalError) Unwrap() error { return e.Err }

// Progress, when set in the context with WithProgress, hears each step as
// it starts: the CLI prints it, the daemon sends it as an event.
type Progress func(index, total int, step string)

type progressKey struct{}

// WithProgress attaches a progress callback to ctx.
func WithProgress(ctx context.Context, p Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, p)
}

func progressOf(ctx context.Context) Progress {
	if p, ok := ctx.Value(progressKey{}).(Progress); ok {
		return p
	}
	return func(int, int, string) {}
}

// StepProgress hears each step with its stable ID as well as its name:
// the daemon shows operation steps by ID, so that an integrator's code
// does not depend on the wording.
type StepProgress func(index, total int, st Step)

type stepProgressKey struct{}

// WithStepProgress attaches a step-progress callback to ctx.
func WithStepProgress(ctx context.Context, p StepProgress) context.Context {
	return context.WithValue(ctx, stepProgressKey{}, p)
}

// announce tells both kinds of listener that a step starts.
func announce(ctx context.Context, idx, total int, st Step) {
	progressOf(ctx)(idx, total, st.Name)
	if p, ok := ctx.Value(stepProgressKey{}).(StepProgress); ok {
		p(idx, total, st)
	}
}

// Step is one recorded step: a stable ID the journal matches on, and the
// name people read.
type Step struct{ ID, Name string }

// runStep executes one recorded step.
func runStep(ctx context.Context, j Steps, idx, total int, st Step, fn func() (string, error)) error {
	announce(ctx, idx, total, st)
	// A cancel (Ctrl-C, SIGTERM) between steps stops before the next one
	// is recorded or sent.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := j.Start(st.ID, idx, st.Name); err != nil {
		return &JournalError{err}
	}
	detail, err := fn()
	if err != nil {
		return fmt.Errorf("step %d (%s): %w", idx, st.Name, err)
	}
	if err := j.Finish(st.ID, detail); err != nil {
		return &JournalError{err}
	}
	return nil
}

// The steps, as recorded in the journal. Their IDs never change; their
// names may.
var (
	StepVerifyGenuine = Step{"internal-auth", "verify card genuine"}
	StepAuthWrite     = Step{"external-auth:write", "authenticate write key"}
	StepReadBack      = Step{"read-back", "read back and compare"}
	StepFinalize      = Step{"finalize", "finalize (lock personalization)"}
	StepUnblockApp    = Step{"transport-unlock", "release transport lock"}
	StepSetPIN        = Step{"pin:change-initial", "set holder PIN"}
	StepReadBasicInfo = Step{"read:basic-info", "read basic info"}
)

// StepBlock is the step of a block of that kind.
func StepBlock(kind BlockKind) Step { return Step{"block:" + string(kind), "block " + string(kind)} }

// ErrAlreadyFinalized is returned when a finalized (locked) card is asked
// to take personalization again: the card refuses it too (6985).
var ErrAlreadyFinalized = errors.New("the card is already locked: personalization is finished and cannot be redone")

// PersonalizeResult says what personalization did.
type PersonalizeResult struct {
	CardID   string `json:"card_id"`
	Profile  string `json:"profile"`
	Written  int    `json:"records_written"`
	Skipped  int    `json:"records_already_written"` // on resume: finished in an earlier attempt
	Verified int    `json:"records_verified"`
	Locked   bool   `json:"locked"`
}

func updateStep(w write) Step {
	return Step{fmt.Sprintf("update:%s:%d", w.File, w.Rec.Number), fmt.Sprintf("update %s record %d (%s)", w.File, w.Rec.Number, w.Rec.Item)}
}

// Personalize writes a holder's data to a blank (or half-written) card
// and reads every written record back, comparing byte for byte. With lock
// it then runs the profile's finalization, which only happens after the
// read-back passed. The request is validated before any APDU is sent.
// INTERNAL AUTHENTICATE comes first: the station hands a write
// cryptogram only to a card that proved itself genuine.
func (a *App) Personalize(ctx context.Context, req *PersonalizeRequest, lock bool, j Steps) (*PersonalizeResult, error) {
	res, err := a.personalize(ctx, req, lock, stepsOrNone(j))
	return res, opError("personalize", err)
}

func (a *App) personalize(ctx context.Context, req *PersonalizeRequest, lock bool, j Steps) (*PersonalizeResult, error) {
	writes, err := plan(a.p, req)
	if err != nil {
		return nil, err
	}
	// INTERNAL AUTHENTICATE and the write key need the key holder: without
	// one nothing is sent, not even the card id's read.
	if err := keys.Ready(a.keys); err != nil {
		return nil, err
	}
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	res := &PersonalizeResult{CardID: fmt.Sprintf("%X", id), Profile: a.p.Name}
	writeKey, ok := a.p.Crypto.Keys["write"]
	if !ok {
		return nil, fmt.Errorf("profile %s has no write key", a.p.Name)
	}
	total := 3 + len(writes)
	if lock {
		total++
	}
	idx := 1
	if err := runStep(ctx, j, idx, total, StepVerifyGenuine, func() (string, error) { return "", a.internalAuth(ctx) }); err != nil {
		return nil, err
	}
	idx++
	if err := runStep(ctx, j, idx, total, StepAuthWrite, func() (string, error) { return "", a.externalAuth(ctx, byte(writeKey)) }); err != nil {
		return nil, err
	}
	for _, w := range writes {
		idx++
		st := updateStep(w)
		if j.Done(st.ID) {
			// Finished in an earlier attempt; UPDATE RECORD is repeatable,
			// but there is no need, and the read-back checks it anyway.
			res.Skipped++
			continue
		}
		w := w
		if err := runStep(ctx, j, idx, total, st, func() (string, error) { return "", a.updateRecord(ctx, w) }); err != nil {
			if errors.Is(err, ErrConditions) {
				return nil, fmt.Errorf("%w (%v)", ErrAlreadyFinalized, err)
			}
			return nil, err
		}
		res.Written++
	}
	idx++
	if err := a.readBackStep(ctx, j, idx, total, writes, res); err != nil {
		return nil, err
	}
	if lock {
		idx++
		if err := a.finalizeStep(ctx, j, idx, total); err != nil {
			return nil, err
		}
		res.Locked = true
	}
	return res, nil
}

// finalizeStep is the recorded FINALIZE, skipped when an earlier attempt
// finished it: the card refuses a second one (6985).
func (a *App) finalizeStep(ctx context.Context, j Steps, idx, total int) error {
	if j.Done(StepFinalize.ID) {
		announce(ctx, idx, total, Step{StepFinalize.ID, StepFinalize.Name + " (done in an earlier attempt)"})
		return nil
	}
	return runStep(ctx, j, idx, total, StepFinalize, func() (string, error) { return a.finalizeOnce(ctx, j) })
}

// finalizeOnce finalizes, knowing that an earlier attempt may have done it
// already: a card pulled after it took FINALIZE but before its answer
// arrived refuses a second one (6985). When the journal shows that step
// pending and the data just read back equal, that refusal means "done".
func (a *App) finalizeOnce(ctx context.Context, j Steps) (string, error) {
	err := a.finalize(ctx)
	if err != nil && errors.Is(err, ErrConditions) && j.Pending(StepFinalize.ID) {
		return "finalized in the interrupted attempt (the card refuses a second finalization)", nil
	}
	return "", err
}

// updateRecord writes one record (the write key is authenticated).
func (a *App) updateRecord(ctx context.Context, w write) error {
	if err := a.selectEF(ctx, w.File); err != nil {
		return err
	}
	a.forget()
	resp, err := a.transmit(ctx, apdu.Command{INS: 0xDC, P1: byte(w.Rec.Number), P2: 0x04, Data: w.TLV, Sensitive: true, Name: "UPDATE RECORD " + w.Rec.Item})
	if err != nil {
		return err
	}
	return statusError(resp.SW)
}

// readBackStep is the recorded read-back of every written record.
func (a *App) readBackStep(ctx context.Context, j Steps, idx, total int, writes []write, res *PersonalizeResult) error {
	return runStep(ctx, j, idx, total, StepReadBack, func() (string, error) {
		n, err := a.readBack(ctx, writes)
		res.Verified = n
		return fmt.Sprintf("%d records equal", n), err
	})
}

// ErrReadBackMismatch is returned when a written record reads back
// differently: the card is not reported personalized, and never locked.
var ErrReadBackMismatch = errors.New("a written record reads back differently")

// readBack reads every record of the plan and compares it byte for byte.
func (a *App) readBack(ctx context.Context, writes []write) (int, error) {
	a.forget()
	n := 0
	for _, w := range writes {
		v, err := a.readRecord(ctx, w.Rec.Item)
		if err != nil {
			return n, err
		}
		if !bytes.Equal(append([]byte{w.Rec.Tag, byte(len(v))}, v...), w.TLV) {
			// Name the record, never its content.
			return n, fmt.Errorf("%w: %s record %d (%s)", ErrReadBackMismatch, w.File, w.Rec.Number, w.Rec.Item)
		}
		n++
	}
	return n, nil
}

// finalize runs the profile's finalization command (MACed).
func (a *App) finalize(ctx context.Context) error {
	sw, err := a.sendMACed(ctx, profiles.CmdFinalize, nil, false)
	if err != nil {
		return err
	}
	if sw == apdu.SWConditionsNotSatisfied {
		return fmt.Errorf("%w: the card refused finalization (6985): already finalized, or not personalized", ErrConditions)
	}
	return statusError(sw)
}

// Lock finalizes a personalized card, after reading every record back
// and comparing it with req: a card is never locked with data that
// differs from what was asked.
func (a *App) Lock(ctx context.Context, req *PersonalizeRequest, j Steps) (*PersonalizeResult, error) {
	res, err := a.lock(ctx, req, stepsOrNone(j))
	return res, opError("lock", err)
}

func (a *App) lock(ctx context.Context, req *PersonalizeRequest, j Steps) (*PersonalizeResult, error) {
	writes, err := plan(a.p, req)
	if err != nil {
		return nil, err
	}
	if err := keys.Ready(a.keys); err != nil {
		return nil, err // finalization is MACed: no read-back that cannot end in a lock
	}
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	res := &PersonalizeResult{CardID: fmt.Sprintf("%X", id), Profile: a.p.Name}
	if err := a.readBackStep(ctx, j, 1, 2, writes, res); err != nil {
		return nil, err
	}
	if err := a.finalizeStep(ctx, j, 2, 2); err != nil {
		return nil, err
	}
	res.Locked = true
	return res, nil
}

// ActivateResult says what activation did.
type ActivateResult struct {
	CardID string `json:"card_id"`
	// AlreadyActive: the holder's PIN was set before this operation, on
	// positive evidence only (Evidence says which).
	AlreadyActive bool `json:"already_active"`
	// Evidence for AlreadyActive: "journal" (this card's journal shows the
	// PIN step done) or "card" (the card refused the initial PIN with 63Cx).
	Evidence  string `json:"evidence,omitempty"`
	Unblocked bool   `json:"transport_lock_released"`
	PINSet    bool   `json:"pin_set"`
	// SetEarlier: the PIN was set by an interrupted attempt of this
	// operation whose answer was lost (the card refuses the initial PIN).
	SetEarlier bool `json:"pin_set_in_interrupted_attempt,omitempty"`
	// TriesLeft is the PIN try counter the card reported, when a refused
	// PIN told it (nil otherwise).
	TriesLeft *int `json:"tries_left,omitempty"`
}

// ErrLastTry: the card has one PIN try left (or cannot say, and the step
// must guess): the station does not guess which PIN the card holds, since
// a wrong guess would block it. The operation stays resumable; the PIN is
// reloaded or unblocked at a bank counter first.
var ErrLastTry = errors.New("the card has one PIN try left: the station will not guess which PIN it holds (reload or unblock the PIN at a bank counter first)")

// Activate makes a delivered card usable, as counters do it (card-reference
// §1, §4, §9): INTERNAL AUTHENTICATE proves the card genuine, then CHANGE
// PIN replaces the initial PIN by the holder's. Only a profile with
// activation.transport_lock releases a transport lock (APPLICATION
// UNBLOCK) first; without it a blocked application is refused.
//
// The card is reported already active only on positive evidence: the
// journal shows this card's PIN step done (no APDU spends a try), or the
// card refuses the initial PIN with 63Cx (the tries left are reported).
// A PIN step that an earlier attempt started and never finished (its
// answer lost) is resumed with the PIN typed the first time (the caller
// checks it against the journal's keyed digest before calling): CHANGE
// PIN from the initial PIN either succeeds (the card still held it) or is
// refused because the lost command took effect. That spends at most one
// try, and none when the card says one is left (ErrLastTry, nothing sent).
func (a *App) Activate(ctx context.Context, newPIN, confirm string, j Steps) (*ActivateResult, error) {
	res, err := a.activate(ctx, newPIN, confirm, stepsOrNone(j))
	return res, opError("activate", err)
}

func (a *App) activate(ctx context.Context, newPIN, confirm string, j Steps) (*ActivateResult, error) {
	if err := a.checkNewPIN(newPIN, confirm); err != nil {
		return nil, err
	}
	if err := keys.Ready(a.keys); err != nil {
		return nil, fmt.Errorf("proving the card genuine: %w", err)
	}
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	res := &ActivateResult{CardID: fmt.Sprintf("%X", id)}
	if j.Done(StepSetPIN.ID) {
		res.AlreadyActive, res.Evidence = true, "journal"
		return res, nil
	}
	if err := a.selectApp(ctx); err != nil {
		return nil, err
	}
	if a.blocked && !a.p.Activation.TransportLock {
		return nil, fmt.Errorf("%w (profile %s: cards are not delivered transport-locked, so activation does not unblock it; a loss may have been reported)", ErrApplicationBlocked, a.p.Name)
	}
	steps := a.p.Activation.Steps
	for i, step := range steps {
		idx := i + 1
		switch step {
		case profiles.StepInternalAuthenticate:
			if err := runStep(ctx, j, idx, len(steps), StepVerifyGenuine, func() (string, error) { return a.proveGenuine(ctx) }); err != nil {
				return nil, err
			}
		case profiles.StepApplicationUnblock:
			if j.Done(StepUnblockApp.ID) {
				continue
			}
			if err := runStep(ctx, j, idx, len(steps), StepUnblockApp, func() (string, error) { return a.releaseTransportLock(ctx) }); err != nil {
				return nil, err
			}
			res.Unblocked = true
		case profiles.StepPINChangeFromInitial:
			if err := a.setHolderPIN(ctx, j, idx, len(steps), newPIN, res); err != nil {
				return nil, err
			}
		case profiles.StepReadBasicInfo:
			// iReadCardBas (card-reference §9): with keys configured, as
			// activation requires, it ends with INTERNAL AUTHENTICATE, so
			// the internal_authenticate step does not send another.
			announce(ctx, idx, len(steps), StepReadBasicInfo)
			if _, err := a.readInfo(ctx, false); err != nil {
				return nil, fmt.Errorf("step %d (read basic info): %w", idx, err)
			}
		case profiles.StepExternalAuthRead:
			// informative: the read authenticates where it needs to
		default:
			return nil, fmt.Errorf("profile %s: activation step %q is not known to this station", a.p.Name, step)
		}
	}
	return res, nil
}

// proveGenuine is activation's INTERNAL AUTHENTICATE, sent once per
// operation: a read in this operation with keys configured (the
// read_basic_info step, or ReadBasicInfo before Activate on the same App)
// already proved the card genuine, and the card cannot change within the
// operation's transaction.
func (a *App) proveGenuine(ctx context.Context) (string, error) {
	if a.genuine {
		return "proven genuine by the read in this operation", nil
	}
	return "", a.internalAuth(ctx)
}

// releaseTransportLock is APPLICATION UNBLOCK of a transport-locked card
// (profiles with activation.transport_lock only).
func (a *App) releaseTransportLock(ctx context.Context) (string, error) {
	if !a.blocked {
		// Released in an interrupted attempt whose answer was lost.
		return "already released", nil
	}
	sw, err := a.sendMACed(ctx, profiles.CmdApplicationUnblock, nil, false)
	if err != nil {
		return "", err
	}
	if err := statusError(sw); err != nil {
		return "", err
	}
	// The application is usable from now on; select it again so the
	// card's state matches.
	a.blocked, a.inApp = false, false
	return "", a.selectApp(ctx)
}

// setHolderPIN is the recorded CHANGE PIN from the initial PIN.
func (a *App) setHolderPIN(ctx context.Context, j Steps, idx, total int, newPIN string, res *ActivateResult) error {
	lost := j.Pending(StepSetPIN.ID)
	// The keyed digest is on disk before the step starts, so a step found
	// pending always has it.
	if err := j.RememberPIN(newPIN); err != nil {
		return &JournalError{err}
	}
	err := runStep(ctx, j, idx, total, StepSetPIN, func() (string, error) {
		// Ask the card how many tries are left where it can say so without
		// spending one; never guess with one left.
		st, err := a.PINTries(ctx)
		switch {
		case errors.Is(err, ErrPINTriesUnknown):
			// A card that cannot say (1.00): the one CHANGE PIN below is the
			// same command a first attempt sends, and a lost one never
			// spent a try (it succeeded), so the counter is what it was
			// when this activation began.
		case err != nil:
			return "", err
		case st.Blocked:
			return "", ErrPINBlocked
		case st.TriesLeft <= 1:
			return "", ErrLastTry
		}
		err = a.changePIN(ctx, a.p.PIN.Initial, newPIN)
		var wp *WrongPIN
		switch {
		case err == nil:
			res.PINSet = true
			return "PIN changed from the initial PIN", nil
		case errors.As(err, &wp) && !errors.Is(err, ErrPINBlocked):
			n := wp.Retries
			res.TriesLeft = &n
			if lost {
				// The card no longer takes the initial PIN: the CHANGE PIN of
				// the interrupted attempt took effect, with the PIN typed then
				// (checked against the journal's digest before this attempt).
				res.PINSet, res.SetEarlier = true, true
				return fmt.Sprintf("set in the interrupted attempt (the card refuses the initial PIN; %d tries left)", n), nil
			}
			res.AlreadyActive, res.Evidence = true, "card"
			return fmt.Sprintf("PIN already set (the card refuses the initial PIN; %d tries left)", n), nil
		}
		return "", err
	})
	if err != nil {
		return err
	}
	if err := j.ForgetPIN(); err != nil {
		return &JournalError{err}
	}
	return nil
}

// BlockKind is how a card reported lost is blocked.
type BlockKind string

const (
	BlockTemporary BlockKind = "temporary" // APPLICATION BLOCK P2 00: can be unblocked
	BlockPermanent BlockKind = "permanent" // APPLICATION BLOCK P2 01: answers 9303 for ever
	BlockCard      BlockKind = "card"      // CARD BLOCK: every application refused
)

// Block blocks the application (or the whole card) with the profile's
// MACed command. Blocking a card already blocked the same way is reported,
// not repeated.
func (a *App) Block(ctx context.Context, kind BlockKind) error {
	return opError("block", a.block(ctx, kind))
}

func (a *App) block(ctx context.Context, kind BlockKind) error {
	var cmd string
	switch kind {
	case BlockTemporary:
		cmd = profiles.CmdApplicationBlockTemporary
	case BlockPermanent:
		cmd = profiles.CmdApplicationBlockPermanent
	case BlockCard:
		cmd = profiles.CmdCardBlock
	default:
		return fmt.Errorf("unknown block kind %q", kind)
	}
	if err := keys.Ready(a.keys); err != nil {
		return err // the command is MACed: nothing is sent without keys
	}
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	if a.blocked && kind == BlockTemporary {
		return ErrAlreadyBlocked
	}
	sw, err := a.sendMACed(ctx, cmd, nil, false)
	if err != nil {
		return err
	}
	return statusError(sw)
}

// ErrAlreadyBlocked: a temporary block asked of an application that is
// blocked already.
var ErrAlreadyBlocked = fmt.Errorf("%w: the application is blocked already", ErrConditions)

// BlockOnce blocks, knowing that an earlier attempt may have sent the
// same BLOCK and lost its answer (lost): a card found blocked the way kind
// asks is then done, not failed.
func (a *App) BlockOnce(ctx context.Context, kind BlockKind, lost bool) (string, error) {
	err := a.block(ctx, kind)
	if err != nil && lost && BlockedAs(kind, err) {
		return "blocked in the interrupted attempt (the card answers blocked)", nil
	}
	return "", opError("block", err)
}

// BlockedAs reports whether err says the card is blocked the way kind
// blocks it: temporarily (the application answers blocked), permanently
// (9303) or as a whole card (6A81).
func BlockedAs(kind BlockKind, err error) bool {
	switch kind {
	case BlockTemporary:
		return errors.Is(err, ErrAlreadyBlocked)
	case BlockPermanent:
		return errors.Is(err, ErrApplicationLocked)
	case BlockCard:
		return errors.Is(err, ErrCardBlocked)
	}
	return false
}

// Unblock releases a temporary application block where the profile has
// APPLICATION UNBLOCK. A permanent block (9303) cannot be undone.
func (a *App) Unblock(ctx context.Context) error {
	return opError("unblock", a.unblock(ctx))
}

func (a *App) unblock(ctx context.Context) error {
	if err := keys.Ready(a.keys); err != nil {
		return err // the command is MACed: nothing is sent without keys
	}
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	if !a.blocked {
		return fmt.Errorf("%w: the application is not blocked", ErrConditions)
	}
	sw, err := a.sendMACed(ctx, profiles.CmdApplicationUnblock, nil, false)
	if err != nil {
		return err
	}
	if err := statusError(sw); err != nil {
		return err
	}
	a.blocked = false
	return nil
}
