// Package service is the contract between the station's HTTP layer
// (station/api) and the part that drives readers and cards
// (station/daemon). The HTTP layer imports only this package (and the
// store), never pcsc or cardapp: everything it needs to answer a request
// — results, problems, events — is described here in plain data.
//
// The daemon implements Station; the API's unit tests may use a fake
// Station, but every end-to-end test runs the real daemon on pcscd + vpcd +
// cardsim.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Role is what a caller may do (one route table in station/api declares
// each route's role).
type Role string

const (
	RoleCounter    Role = "counter"    // read, verify, activate, block
	RoleBank       Role = "bank"       // read, PIN operations
	RoleTechnician Role = "technician" // readers, diagnostics, raw APDU
	RoleAdmin      Role = "admin"      // personalize, lock, unblock, configuration
)

// Caller is who asked: it goes into the audit record of every card touch.
type Caller struct {
	TokenName  string `json:"token_name"`
	Role       Role   `json:"role"`
	OperatorID string `json:"operator_id,omitempty"` // X-Operator-Id: the staff member
	RequestID  string `json:"request_id,omitempty"`
	// MaySeeSSN: the role may see the full ID number (otherwise masked).
	MaySeeSSN bool `json:"-"`
}

// Kind names a card operation.
type Kind string

const (
	KindRead        Kind = "read"        // identify + iReadCardBas items (cached per insertion)
	KindReadFull    Kind = "read_full"   // every EF05/EF06 item
	KindVerifyCard  Kind = "verify_card" // INTERNAL AUTHENTICATE: is the card genuine
	KindActivate    Kind = "activate"    // genuine check, then CHANGE PIN from the initial PIN
	KindPINTries    Kind = "pin_tries"   // tries left
	KindPINVerify   Kind = "pin_verify"  // VERIFY
	KindPINChange   Kind = "pin_change"  // CHANGE PIN old -> new
	KindPINReload   Kind = "pin_reload"  // forgotten PIN: set a new one by key
	KindPINUnblock  Kind = "pin_unblock" // reset the try counter (no new PIN)
	KindPersonalize Kind = "personalize" // write a blank card (optionally lock)
	KindBlock       Kind = "block"       // application block (temporary/permanent) or card block
	KindUnblock     Kind = "unblock"     // application unblock
	KindAPDU        Kind = "apdu"        // technician: raw APDUs (PIN-bearing ones refused)
	KindDiagnostics Kind = "diagnostics" // technician (later)
	KindConform     Kind = "conform"     // technician: the conformance kit's read-side checks
	KindResume      Kind = "resume"      // resume a journaled operation by op id
)

// Writes reports whether an operation of this kind changes the card (and
// so needs an Idempotency-Key and drops the card-info cache).
func (k Kind) Writes() bool {
	switch k {
	case KindActivate, KindPINChange, KindPINReload, KindPINUnblock, KindPersonalize, KindBlock, KindUnblock, KindAPDU, KindResume:
		return true
	}
	return false
}

// PINEntry says where a PIN comes from.
type PINEntry string

const (
	PINEntryHost   PINEntry = "host"   // in the request body (never logged or stored)
	PINEntryPinpad PINEntry = "pinpad" // typed on the reader's PIN pad (not on every reader)
)

// Request is one card operation as the API hands it over. PIN fields are
// secrets: never logged, never stored, not part of idempotency fingerprints.
type Request struct {
	Kind     Kind   `json:"kind"`
	ReaderID string `json:"reader_id,omitempty"` // "" = the one card reader holding a card
	Caller   Caller `json:"caller"`
	// IdempotencyKey, when set, is recorded with the operation.
	IdempotencyKey string `json:"-"`

	PINEntry   PINEntry `json:"pin_entry,omitempty"`
	PIN        string   `json:"-"` // verify; activate: the new PIN
	PINConfirm string   `json:"-"` // activate/change/reload: the new PIN again
	OldPIN     string   `json:"-"` // change
	NewPIN     string   `json:"-"` // change/reload

	// Personalize: the holder and card data (cardapp.PersonalizeRequest as
	// JSON, kept opaque here so the API needs no cardapp import) and lock.
	Personalize json.RawMessage `json:"-"`
	Lock        bool            `json:"lock,omitempty"`
	// Block: "temporary", "permanent" or "card".
	BlockKind string `json:"block_kind,omitempty"`
	// Resume: the journal's operation id.
	OpID string `json:"op_id,omitempty"`
	// APDU: hex command APDUs for the technician route.
	APDUs []string `json:"apdus,omitempty"`
	// Conform: the firmware profile to check the card against ("" = the
	// one the card identifies as).
	Profile string `json:"profile,omitempty"`
}

// DiagnosticsOptions tune Station.Diagnostics.
type DiagnosticsOptions struct {
	// Latency is the number of GET CHALLENGEs of each card's latency test
	// (0: the diagnosis's default).
	Latency int
}

// State of an operation resource.
type State string

const (
	StateQueued      State = "queued"
	StateRunning     State = "running"
	StateDone        State = "done"
	StateFailed      State = "failed"      // refused, known to have changed nothing
	StateInterrupted State = "interrupted" // outcome of a card write unknown: resumable
	StateCancelled   State = "cancelled"
)

// Final reports whether the state is an end state.
func (s State) Final() bool {
	return s == StateDone || s == StateFailed || s == StateInterrupted || s == StateCancelled
}

// Step is one step of an operation, for progress.
type Step struct {
	ID    string `json:"id"`    // stable id, e.g. "update:EF06:2"
	Name  string `json:"name"`  // display name
	State string `json:"state"` // pending, started, done
}

// Operation is the resource behind /v1/operations/{id}.
type Operation struct {
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind"`
	ReaderID  string    `json:"reader_id"`
	State     State     `json:"state"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Steps     []Step    `json:"steps,omitempty"`
	Progress  float64   `json:"progress"` // 0..1
	JournalOp string    `json:"journal_op,omitempty"`
	// Result is the operation's JSON result (shape per kind, documented
	// in the OpenAPI document); nil until done.
	Result json.RawMessage `json:"result,omitempty"`
	// Problem is set when the operation failed or was interrupted.
	Problem *Problem `json:"problem,omitempty"`
	// WriteInFlight: a card write is under way, so it cannot be cancelled.
	WriteInFlight bool `json:"-"`
}

// Code is a stable error code for integrators.
type Code string

const (
	CodeCardAbsent        Code = "CARD_ABSENT"
	CodeCardUnknown       Code = "CARD_UNKNOWN"
	CodeCardRemoved       Code = "CARD_REMOVED"
	CodeCardNotGenuine    Code = "CARD_NOT_GENUINE"
	CodeCardBlocked       Code = "CARD_BLOCKED"
	CodeCardExpired       Code = "CARD_EXPIRED"
	CodeOtherCard         Code = "OTHER_CARD"
	CodeAlreadyActive     Code = "PIN_ALREADY_SET"
	CodePINIncorrect      Code = "PIN_INCORRECT"
	CodePINBlocked        Code = "PIN_BLOCKED"
	CodePINPolicy         Code = "PIN_POLICY" // length, digits, initial PIN, confirmation differs
	CodePINPadMissing     Code = "PINPAD_NOT_AVAILABLE"
	CodePINPadEntry       Code = "PINPAD_ENTRY_FAILED" // timeout, cancel, entries differ: no try spent
	CodeInvalidData       Code = "INVALID_DATA"        // holder/card data refused before any APDU
	CodeCardRefused       Code = "CARD_REFUSED"        // any other status word
	CodeNoKeyProvider     Code = "NO_KEY_PROVIDER"
	CodeKeyProviderFailed Code = "KEY_PROVIDER_FAILED"
	CodeReaderNotFound    Code = "READER_NOT_FOUND"
	CodeReaderBusy        Code = "READER_BUSY"
	CodeAmbiguousReader   Code = "AMBIGUOUS_READER"
	CodePCSCUnavailable   Code = "PCSC_UNAVAILABLE"
	CodeInterrupted       Code = "INTERRUPTED"
	CodeCancelled         Code = "CANCELLED"
	CodeShuttingDown      Code = "SHUTTING_DOWN"
	CodeAuditUnavailable  Code = "AUDIT_UNAVAILABLE"
	CodeNotFound          Code = "NOT_FOUND"
	CodeCancelRefused     Code = "CANCEL_REFUSED"
	CodeInternal          Code = "INTERNAL"
)

// Problem is an error in the words integrators see (RFC 9457 fields are
// added by the API). Detail is our own words: never an OS string, never a
// PIN, key or full ID number.
type Problem struct {
	Code       Code   `json:"code"`
	Title      string `json:"title"`
	Detail     string `json:"detail,omitempty"`
	LegacyCode int    `json:"legacy_code,omitempty"` // iReadCardBas family: -2, -51, -52, minus the SW...
	SW         string `json:"sw,omitempty"`          // "63C2"
	TriesLeft  *int   `json:"tries_left,omitempty"`
	ReaderID   string `json:"reader_id,omitempty"`
	Retryable  bool   `json:"retryable"`
	// RetryAfter, when set, becomes the Retry-After header.
	RetryAfter time.Duration `json:"-"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return string(p.Code) + ": " + p.Detail
	}
	return string(p.Code) + ": " + p.Title
}

// AsProblem finds a *Problem in err's chain.
func AsProblem(err error) (*Problem, bool) {
	var p *Problem
	ok := errors.As(err, &p)
	return p, ok
}

// Reader is what /v1/readers shows of one reader.
type Reader struct {
	ID          string `json:"id"`   // stable id (not the raw PC/SC name)
	Name        string `json:"name"` // the PC/SC name, for technicians
	Role        string `json:"role"` // card, psam, ignore
	CardPresent bool   `json:"card_present"`
	ATR         string `json:"atr,omitempty"`
	Profile     string `json:"profile,omitempty"` // once identified
	PINPad      bool   `json:"pinpad"`
	Busy        bool   `json:"busy"`
	QueueLength int    `json:"queue_length"`
}

// Readers is the list with a state version that changes whenever any
// reader or card changes.
type Readers struct {
	Version uint64   `json:"version"`
	PCSCUp  bool     `json:"pcsc_up"`
	Readers []Reader `json:"readers"`
}

// EventType names a Server-Sent Event.
type EventType string

const (
	EventReaderAdded       EventType = "reader.added"
	EventReaderRemoved     EventType = "reader.removed"
	EventCardInserted      EventType = "card.inserted"
	EventCardRemoved       EventType = "card.removed"
	EventOperationProgress EventType = "operation.progress"
	EventOperationDone     EventType = "operation.completed"
	EventOperationFailed   EventType = "operation.failed"
	EventPCSCUp            EventType = "pcsc.up"
	EventPCSCDown          EventType = "pcsc.down"
)

// Event is one event; IDs increase by one per event, per daemon run
// (the API's ring buffer serves Last-Event-ID resume).
type Event struct {
	ID   uint64          `json:"id"`
	Type EventType       `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"` // e.g. {"reader_id":"r1","atr":"3B..."}
}

// Station is what the HTTP layer drives.
type Station interface {
	// Readers lists the readers; never blocks on a card.
	Readers(ctx context.Context) (*Readers, error)
	// Reader shows one reader (CodeReaderNotFound problem if unknown).
	Reader(ctx context.Context, id string) (*Reader, error)
	// Submit queues an operation on its reader and returns it at once
	// (state queued or running). Problems: READER_BUSY (queue full, with
	// RetryAfter), AMBIGUOUS_READER, READER_NOT_FOUND, CARD_ABSENT,
	// PCSC_UNAVAILABLE (with RetryAfter), SHUTTING_DOWN, AUDIT_UNAVAILABLE,
	// PINPAD_NOT_AVAILABLE, PIN_POLICY/INVALID_DATA (checked before queueing).
	Submit(ctx context.Context, req Request) (*Operation, error)
	// Operation returns a snapshot (CodeNotFound problem if unknown).
	Operation(ctx context.Context, id string) (*Operation, error)
	// Wait blocks until the operation is final or ctx ends, and returns
	// the latest snapshot either way.
	Wait(ctx context.Context, id string) (*Operation, error)
	// Cancel cancels a queued operation, or a running one where no card
	// write is in flight; otherwise it returns ErrWriteInFlight (the API
	// answers 409 CANCEL_REFUSED).
	Cancel(ctx context.Context, id string) (*Operation, error)
	// Subscribe returns the events after afterID still held in the ring
	// buffer (and whether any were lost), then a channel of new ones until
	// cancel is called.
	Subscribe(afterID uint64) (backlog []Event, lost bool, ch <-chan Event, cancel func())
	// Diagnostics runs the technician's diagnosis and returns the same
	// report as `sscard diag --json` (station/diag's Report, as JSON so
	// that the HTTP layer needs no PC/SC import). Each reader's part waits
	// its turn on that reader's worker, behind the operations queued
	// before it: no connection or transaction competes with a busy reader.
	Diagnostics(ctx context.Context, o DiagnosticsOptions) (json.RawMessage, error)
	// Ready reports whether the station can take card operations now
	// (PC/SC up, store writable); nil when ready.
	Ready(ctx context.Context) error
	// Shutdown stops taking operations (SHUTTING_DOWN) and waits, bounded
	// by ctx, for the one in progress on each reader.
	Shutdown(ctx context.Context) error
}

// ErrWriteInFlight is returned by Cancel when a card write is under way.
var ErrWriteInFlight = errors.New("a card write is in flight: the operation cannot be cancelled now")
