package cardapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// Steps records the progress of a multi-step operation so that a card
// pulled at any step can resume: station/journal implements it over bbolt.
// Start is recorded before a step runs and Finish after; Done reports a
// step finished in an earlier attempt of the same operation.
type Steps interface {
	Done(step string) bool
	// Pending reports a step started in an earlier attempt and never
	// finished: the card may or may not have carried it out.
	Pending(step string) bool
	Start(step string, index int) error
	Finish(step string, index int, detail string) error
}

// noSteps is the journal of an operation nobody records.
type noSteps struct{}

func (noSteps) Done(string) bool                 { return false }
func (noSteps) Pending(string) bool              { return false }
func (noSteps) Start(string, int) error          { return nil }
func (noSteps) Finish(string, int, string) error { return nil }
func stepsOrNone(s Steps) Steps {
	if s == nil {
		return noSteps{}
	}
	return s
}

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

// run executes one recorded step.
func runStep(ctx context.Context, j Steps, idx, total int, name string, fn func() (string, error)) error {
	progressOf(ctx)(idx, total, name)
	if err := j.Start(name, idx); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	detail, err := fn()
	if err != nil {
		return fmt.Errorf("step %d (%s): %w", idx, name, err)
	}
	if err := j.Finish(name, idx, detail); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Step names, as recorded in the journal.
const (
	StepVerifyGenuine = "verify card genuine"
	StepAuthWrite     = "authenticate write key"
	StepReadBack      = "read back and compare"
	StepFinalize      = "finalize (lock personalization)"
	StepUnblockApp    = "release transport lock"
	StepSetPIN        = "set holder PIN"
)

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

func updateStepName(w write) string {
	return fmt.Sprintf("update %s record %d (%s)", w.File, w.Rec.Number, w.Rec.Item)
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
		name := updateStepName(w)
		if j.Done(name) {
			// Finished in an earlier attempt; UPDATE RECORD is repeatable,
			// but there is no need, and the read-back checks it anyway.
			res.Skipped++
			continue
		}
		w := w
		if err := runStep(ctx, j, idx, total, name, func() (string, error) { return "", a.updateRecord(ctx, w) }); err != nil {
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
		if err := runStep(ctx, j, idx, total, StepFinalize, func() (string, error) { return a.finalizeOnce(ctx, j) }); err != nil {
			return nil, err
		}
		res.Locked = true
	}
	return res, nil
}

// finalizeOnce finalizes, knowing that an earlier attempt may have done it
// already: a card pulled after it took FINALIZE but before its answer
// arrived refuses a second one (6985). When the journal shows that step
// pending and the data just read back equal, that refusal means "done".
func (a *App) finalizeOnce(ctx context.Context, j Steps) (string, error) {
	err := a.finalize(ctx)
	if err != nil && errors.Is(err, ErrConditions) && j.Pending(StepFinalize) {
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
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	res := &PersonalizeResult{CardID: fmt.Sprintf("%X", id), Profile: a.p.Name}
	if err := a.readBackStep(ctx, j, 1, 2, writes, res); err != nil {
		return nil, err
	}
	if err := runStep(ctx, j, 2, 2, StepFinalize, func() (string, error) { return a.finalizeOnce(ctx, j) }); err != nil {
		return nil, err
	}
	res.Locked = true
	return res, nil
}

// ActivateResult says what activation did.
type ActivateResult struct {
	CardID        string `json:"card_id"`
	AlreadyActive bool   `json:"already_active"`
	Unblocked     bool   `json:"transport_lock_released"`
	PINSet        bool   `json:"pin_set"`
}

// Activate makes a delivered card usable: INTERNAL AUTHENTICATE (the card
// is genuine), the profile's enabling step (APPLICATION UNBLOCK of the
// transport lock, assumption A-ACTIVATION), and the holder's first PIN
// in place of the initial one. A card already active gets AlreadyActive
// and nothing is written. resume is true when the journal holds an
// unfinished activation of this card: the PIN step is then still due even
// though the transport lock is gone.
func (a *App) Activate(ctx context.Context, newPIN, confirm string, j Steps, resume bool) (*ActivateResult, error) {
	res, err := a.activate(ctx, newPIN, confirm, stepsOrNone(j), resume)
	return res, opError("activate", err)
}

func (a *App) activate(ctx context.Context, newPIN, confirm string, j Steps, resume bool) (*ActivateResult, error) {
	if err := a.checkNewPIN(newPIN, confirm); err != nil {
		return nil, err
	}
	if err := a.selectApp(ctx); err != nil {
		return nil, err
	}
	id, err := a.CardID(ctx)
	if err != nil {
		return nil, err
	}
	res := &ActivateResult{CardID: fmt.Sprintf("%X", id)}
	if !a.blocked && !resume {
		res.AlreadyActive = true
		return res, nil
	}
	steps := a.p.Activation.Steps
	for i, step := range steps {
		idx := i + 1
		switch step {
		case profiles.StepInternalAuthenticate:
			if err := runStep(ctx, j, idx, len(steps), StepVerifyGenuine, func() (string, error) { return "", a.internalAuth(ctx) }); err != nil {
				return nil, err
			}
		case profiles.StepApplicationUnblock:
			if j.Done(StepUnblockApp) {
				continue
			}
			if err := runStep(ctx, j, idx, len(steps), StepUnblockApp, func() (string, error) {
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
				// The application is usable from now on; select it again
				// so the card's state matches.
				a.blocked, a.inApp = false, false
				return "", a.selectApp(ctx)
			}); err != nil {
				return nil, err
			}
			res.Unblocked = true
		case profiles.StepPINChangeFromInitial:
			if j.Done(StepSetPIN) {
				continue
			}
			if err := runStep(ctx, j, idx, len(steps), StepSetPIN, func() (string, error) {
				if j.Pending(StepSetPIN) {
					// An interrupted attempt sent CHANGE PIN and lost the
					// answer: the card may hold the new PIN already. Try it
					// (the holder just typed it again) before the initial
					// one. If it is not set yet, this costs one try, which
					// the successful CHANGE PIN below gives back.
					err := a.verifyRaw(ctx, newPIN)
					if err == nil {
						return "set in the interrupted attempt", nil
					}
					var wp *WrongPIN
					if !errors.As(err, &wp) {
						return "", err
					}
				}
				return "", a.changePIN(ctx, a.p.PIN.Initial, newPIN)
			}); err != nil {
				var wp *WrongPIN
				if errors.As(err, &wp) {
					// The card's PIN is no longer the initial one: someone
					// set it already. Say so; do not try anything else.
					return nil, fmt.Errorf("the card's PIN is not the initial PIN any more (it was set already): %w", err)
				}
				return nil, err
			}
			res.PINSet = true
		case profiles.StepReadBasicInfo, profiles.StepExternalAuthRead:
			// informative steps: reading happens where needed
		default:
			return nil, fmt.Errorf("profile %s: activation step %q is not known to this station", a.p.Name, step)
		}
	}
	return res, nil
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
	if err := a.selectApp(ctx); err != nil {
		return err
	}
	if a.blocked && kind == BlockTemporary {
		return fmt.Errorf("%w: the application is blocked already", ErrConditions)
	}
	sw, err := a.sendMACed(ctx, cmd, nil, false)
	if err != nil {
		return err
	}
	return statusError(sw)
}

// Unblock releases a temporary application block where the profile has
// APPLICATION UNBLOCK. A permanent block (9303) cannot be undone.
func (a *App) Unblock(ctx context.Context) error {
	return opError("unblock", a.unblock(ctx))
}

func (a *App) unblock(ctx context.Context) error {
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
