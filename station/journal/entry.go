package journal

import (
	"fmt"
	"time"
)

// Status is the state of an operation.
type Status string

// The statuses. Running and Interrupted are unfinished; Done, Failed and
// Abandoned are final. Damaged is never stored: List and ByCard report an
// entry that cannot be decoded with it, so one bad entry never hides the
// others.
const (
	StatusRunning     Status = "running"
	StatusInterrupted Status = "interrupted"
	StatusDone        Status = "done"
	StatusFailed      Status = "failed"
	StatusAbandoned   Status = "abandoned"
	StatusDamaged     Status = "damaged"
)

// Final reports whether the status is final (done, failed or abandoned):
// no step may be recorded on such an entry.
func (s Status) Final() bool {
	return s == StatusDone || s == StatusFailed || s == StatusAbandoned
}

// Unfinished reports whether the status is running or interrupted.
func (s Status) Unfinished() bool {
	return s == StatusRunning || s == StatusInterrupted
}

// StepState is the state of one step.
type StepState string

// The step states.
const (
	StateStarted StepState = "started"
	StateDone    StepState = "done"
)

// Operation kinds used by the station. Kind is not restricted to these.
const (
	KindPersonalize = "personalize"
	KindLock        = "lock"
	KindActivate    = "activate"
	KindBlock       = "block"
)

// Step is the record of one step of an operation. The journal keeps one
// record per step ID: starting a step again (after a resume) resets its
// record to started, counts the attempt and moves it to the end of
// Entry.Steps, so the last element is always the step started last.
type Step struct {
	// ID is the step's stable identifier, e.g. "update:EF06:2": code
	// matches steps by it, so a new station version that words its
	// display names differently still resumes an entry in flight.
	ID string `json:"id"`
	// Name is the display name, e.g. "update EF06 record 2 (name)".
	Name string `json:"name"`
	// Index is the step's position in the plan, for display (a new plan
	// may number the same step differently).
	Index    int       `json:"index"`
	State    StepState `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	// Attempts counts how many times the step was started (1 for a step
	// that ran once).
	Attempts int `json:"attempts"`
}

// Entry is one operation on one card.
type Entry struct {
	// OpID identifies the operation (letters, digits and ._:- only, at
	// most 64 characters). Begin chooses a random one when it is empty.
	OpID string `json:"op_id"`
	// Kind is the operation: personalize, lock, activate, block, ...
	Kind string `json:"kind"`
	// CardID is the card identification code: 16 bytes as 32 upper-case
	// hex characters (lower case is accepted and upper-cased).
	CardID string `json:"card_id"`
	// Reader is the PC/SC reader the operation last ran in. It is
	// informational: a card is matched by CardID, never by reader.
	Reader string `json:"reader,omitempty"`
	// Profile is the firmware profile the card was recognised as.
	Profile string `json:"profile,omitempty"`
	// PayloadDigest is the caller's keyed digest of its canonical request
	// (the station uses HMAC-SHA256 under the station secret: 64 hex
	// characters, stored lower case). The request itself is never stored.
	PayloadDigest string `json:"payload_digest"`

	Status Status `json:"status"`
	Steps  []Step `json:"steps,omitempty"`
	// Error is the text of the error that interrupted or failed the
	// operation.
	Error string `json:"error,omitempty"`
	// Note is a technician's note (Abandon) or the caller's.
	Note string `json:"note,omitempty"`
	// Resumes counts how many times Begin took the entry up again.
	Resumes int `json:"resumes,omitempty"`
	// AttemptToken is the token of the attempt that holds the entry now:
	// Begin draws a new one, and every later write must carry it.
	AttemptToken string `json:"attempt,omitempty"`
	// PINCheck is the caller's keyed digest of a PIN that a step in flight
	// is setting (never the PIN, never a bare hash of it): a resume checks
	// the PIN typed again against it before sending anything. It is
	// dropped when the step settles and when the entry ends.
	PINCheck string `json:"pin_check,omitempty"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Attempt names one attempt at an operation: the entry's OpID and the
// token Begin drew for it. A write carrying another token than the
// entry's current one is refused (ErrStale): a worker that lost the entry
// to a later Begin cannot overwrite what the live one records.
type Attempt struct {
	OpID  string
	Token string
}

// Attempt is the entry's current attempt.
func (e *Entry) Attempt() Attempt { return Attempt{OpID: e.OpID, Token: e.AttemptToken} }

// LastStep returns the step started last, or false if no step was recorded.
func (e *Entry) LastStep() (Step, bool) {
	if e == nil || len(e.Steps) == 0 {
		return Step{}, false
	}
	return e.Steps[len(e.Steps)-1], true
}

// StepDone reports whether the step with that ID has finished (and was
// not started again since).
func (e *Entry) StepDone(id string) bool {
	st, ok := e.Step(id)
	return ok && st.State == StateDone
}

// StepPending reports whether the step with that ID was started and not
// finished: the card may or may not have carried it out.
func (e *Entry) StepPending(id string) bool {
	st, ok := e.Step(id)
	return ok && st.State == StateStarted
}

// Step returns the record of the step with that ID.
func (e *Entry) Step(id string) (Step, bool) {
	if e != nil {
		for _, st := range e.Steps {
			if st.ID == id {
				return st, true
			}
		}
	}
	return Step{}, false
}

// Pending returns the steps that were started and not finished, in the
// order they were started. After an interruption these are the steps that
// must be redone.
func (e *Entry) Pending() []Step {
	if e == nil {
		return nil
	}
	var out []Step
	for _, st := range e.Steps {
		if st.State != StateDone {
			out = append(out, st)
		}
	}
	return out
}

// StoppedAt describes in words where the operation stopped, for example
// "stopped during step 3 (update EF06 record 2), started 12:01:02" or
// "stopped after step 5 (read back), finished 12:01:09". Times are printed
// in the zone the journal's clock gave them.
func (e *Entry) StoppedAt() string {
	st, ok := e.LastStep()
	if !ok {
		if e != nil && e.Status == StatusDone {
			return "done, no step recorded"
		}
		return "stopped before the first step"
	}
	verb := "stopped"
	if e.Status == StatusDone {
		verb = "done"
	}
	if st.State == StateDone {
		return fmt.Sprintf("%s after step %d (%s), finished %s", verb, st.Index, st.Name, st.Finished.Format("15:04:05"))
	}
	return fmt.Sprintf("%s during step %d (%s), started %s", verb, st.Index, st.Name, st.Started.Format("15:04:05"))
}
