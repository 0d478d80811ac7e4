package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"ssstation/station/service"
)

// fakeStation is a small in-memory station for the HTTP layer's unit
// tests (the end-to-end tests run the real daemon on pcscd + vpcd +
// cardsim). It behaves: it resolves readers, refuses what the real one
// refuses before queueing, keeps a card's PIN and try counter, runs
// operations in goroutines, and counts every Submit so a test can prove
// the station was never reached.
type fakeStation struct {
	mu      sync.Mutex
	readers []service.Reader
	version uint64
	ops     map[string]*fakeOp
	seq     int
	submits int
	// hold, when set, keeps operations running until it is closed.
	hold chan struct{}
	// card state
	pin       string
	tries     int
	active    bool
	blocked   bool
	notReady  error
	events    []service.Event
	subs      map[int]chan service.Event
	subSeq    int
	lastReq   service.Request
	writeBusy bool // operations report a card write in flight
	// lastDiagLatency is the latency asked of the last diagnosis.
	lastDiagLatency int
}

type fakeOp struct {
	op   service.Operation
	done chan struct{}
}

const fakeSSN = "110101199003074518"

func newFakeStation() *fakeStation {
	return &fakeStation{
		readers: []service.Reader{
			{ID: "r1", Name: "Virtual PCD 00 00", Role: "card", CardPresent: true, ATR: "3B6800000073C84012009000", Profile: "ssse-3.0"},
			{ID: "r2", Name: "Virtual PCD 00 01", Role: "psam", CardPresent: true},
			{ID: "r3", Name: "Pinpad Reader 00", Role: "card", CardPresent: false, PINPad: true},
		},
		version: 7,
		ops:     map[string]*fakeOp{},
		pin:     "123456",
		tries:   3,
		subs:    map[int]chan service.Event{},
	}
}

func (f *fakeStation) Submits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.submits
}

func (f *fakeStation) Readers(context.Context) (*service.Readers, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &service.Readers{Version: f.version, PCSCUp: true, Readers: append([]service.Reader(nil), f.readers...)}, nil
}

func (f *fakeStation) Reader(_ context.Context, id string) (*service.Reader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.readers {
		if r.ID == id {
			return &r, nil
		}
	}
	return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "no such reader", ReaderID: id}
}

func (f *fakeStation) resolve(id string) (*service.Reader, error) {
	if id != "" {
		for i := range f.readers {
			if f.readers[i].ID == id {
				r := &f.readers[i]
				if r.Role != "card" {
					return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "not a card reader", ReaderID: id}
				}
				if !r.CardPresent {
					return nil, &service.Problem{Code: service.CodeCardAbsent, Title: "no card", ReaderID: id, LegacyCode: -2}
				}
				return r, nil
			}
		}
		return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "no such reader", ReaderID: id}
	}
	var found *service.Reader
	for i := range f.readers {
		r := &f.readers[i]
		if r.Role == "card" && r.CardPresent {
			if found != nil {
				return nil, &service.Problem{Code: service.CodeAmbiguousReader, Title: "several readers hold a card"}
			}
			found = r
		}
	}
	if found == nil {
		return nil, &service.Problem{Code: service.CodeCardAbsent, Title: "no card", LegacyCode: -2}
	}
	return found, nil
}

func (f *fakeStation) Submit(_ context.Context, req service.Request) (*service.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits++
	f.lastReq = req
	if req.Caller.TokenName == "" || req.Caller.Role == "" {
		return nil, &service.Problem{Code: service.CodeInternal, Title: "no caller"}
	}
	r, err := f.resolve(req.ReaderID)
	if err != nil {
		return nil, err
	}
	if req.PINEntry == service.PINEntryPinpad && !r.PINPad {
		return nil, &service.Problem{Code: service.CodePINPadMissing, Title: "no PIN pad", ReaderID: r.ID}
	}
	f.seq++
	now := time.Now().UTC()
	o := &fakeOp{op: service.Operation{ID: fmt.Sprintf("op-%d", f.seq), Kind: req.Kind, ReaderID: r.ID, State: service.StateRunning, Created: now, Updated: now,
		Steps: []service.Step{{ID: "select", Name: "select the application", State: "started"}}, WriteInFlight: f.writeBusy && req.Kind.Writes()}, done: make(chan struct{})}
	f.ops[o.op.ID] = o
	snap := o.snapshot()
	go f.run(o, req, f.hold)
	return &snap, nil
}

// snapshot copies the operation, steps included (callers hold it while
// the operation goes on).
func (o *fakeOp) snapshot() service.Operation {
	s := o.op
	s.Steps = append([]service.Step(nil), o.op.Steps...)
	return s
}

func (f *fakeStation) run(o *fakeOp, req service.Request, hold chan struct{}) {
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer close(o.done)
	if o.op.State == service.StateCancelled {
		return
	}
	o.op.Updated = time.Now().UTC()
	o.op.Steps[0].State = "done"
	o.op.Progress = 1
	res, p := f.work(req)
	if p != nil {
		p.ReaderID = o.op.ReaderID
		o.op.State, o.op.Problem = service.StateFailed, p
		f.emit(service.EventOperationFailed, map[string]string{"operation_id": o.op.ID})
		return
	}
	o.op.State = service.StateDone
	o.op.Result, _ = json.Marshal(res)
	f.emit(service.EventOperationDone, map[string]string{"operation_id": o.op.ID})
}

// work is the card: a PIN with a try counter, an activation, a block.
func (f *fakeStation) work(req service.Request) (any, *service.Problem) {
	wrongPIN := func() *service.Problem {
		if f.tries > 0 {
			f.tries--
		}
		t := f.tries
		if t == 0 {
			return &service.Problem{Code: service.CodePINBlocked, Title: "PIN blocked", LegacyCode: -52, SW: "6983", TriesLeft: &t}
		}
		return &service.Problem{Code: service.CodePINIncorrect, Title: "wrong PIN", LegacyCode: -51, SW: fmt.Sprintf("63C%d", t), TriesLeft: &t}
	}
	if f.blocked && req.Kind != service.KindUnblock && req.Kind != service.KindRead {
		return nil, &service.Problem{Code: service.CodeCardBlocked, Title: "blocked", SW: "6A81", LegacyCode: -27265}
	}
	switch req.Kind {
	case service.KindRead, service.KindReadFull:
		ssn := fakeSSN
		if !req.Caller.MaySeeSSN {
			ssn = ssn[:4] + strings.Repeat("*", len(ssn)-6) + ssn[len(ssn)-2:]
		}
		return map[string]any{
			"card":         map[string]any{"card_id": "411600D15600000500A1B2C3", "ssn": ssn, "name": "张三", "card_number": "A12345678"},
			"ireadcardbas": "411600|" + ssn + "|A12345678|411600D15600000500A1B2C3|张三|008800|3.00|20211203|20311202|",
			"ssn_masked":   !req.Caller.MaySeeSSN,
		}, nil
	case service.KindVerifyCard:
		return map[string]any{"genuine": true, "expiry_date": "20311202", "expired": false}, nil
	case service.KindPINTries:
		return map[string]any{"tries_left": f.tries, "blocked": f.tries == 0}, nil
	case service.KindPINVerify:
		if f.tries == 0 {
			return nil, &service.Problem{Code: service.CodePINBlocked, Title: "PIN blocked", LegacyCode: -52}
		}
		if req.PIN != f.pin {
			return nil, wrongPIN()
		}
		f.tries = 3
		return map[string]bool{"verified": true}, nil
	case service.KindActivate:
		if f.active {
			return nil, &service.Problem{Code: service.CodeAlreadyActive, Title: "already active"}
		}
		f.active, f.pin = true, req.PIN
		return map[string]any{"activation": map[string]any{"pin_set": true}}, nil
	case service.KindPINChange:
		if req.OldPIN != f.pin {
			return nil, wrongPIN()
		}
		f.pin = req.NewPIN
		return map[string]bool{"changed": true}, nil
	case service.KindPINReload:
		f.pin, f.tries = req.NewPIN, 3
		return map[string]bool{"reloaded": true}, nil
	case service.KindPINUnblock:
		f.tries = 3
		return map[string]bool{"unblocked": true}, nil
	case service.KindBlock:
		f.blocked = true
		return map[string]any{"blocked": req.BlockKind}, nil
	case service.KindUnblock:
		f.blocked = false
		return map[string]bool{"unblocked": true}, nil
	case service.KindPersonalize:
		var pr struct {
			Holder map[string]string `json:"holder"`
		}
		if json.Unmarshal(req.Personalize, &pr) != nil || pr.Holder["ssn"] == "" {
			return nil, &service.Problem{Code: service.CodeInvalidData, Title: "holder data"}
		}
		return map[string]any{"personalization": map[string]any{"records_written": 12, "locked": req.Lock}}, nil
	case service.KindAPDU:
		out := make([]string, len(req.APDUs))
		for i := range out {
			out[i] = "9000"
		}
		return map[string]any{"responses": out}, nil
	}
	return nil, &service.Problem{Code: service.CodeInvalidData, Title: "unknown kind"}
}

func (f *fakeStation) Operation(_ context.Context, id string) (*service.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.ops[id]
	if !ok {
		return nil, &service.Problem{Code: service.CodeNotFound, Title: "no such operation"}
	}
	snap := o.snapshot()
	return &snap, nil
}

func (f *fakeStation) Wait(ctx context.Context, id string) (*service.Operation, error) {
	f.mu.Lock()
	o, ok := f.ops[id]
	f.mu.Unlock()
	if !ok {
		return nil, &service.Problem{Code: service.CodeNotFound, Title: "no such operation"}
	}
	select {
	case <-o.done:
	case <-ctx.Done():
	}
	return f.Operation(context.Background(), id)
}

func (f *fakeStation) Cancel(_ context.Context, id string) (*service.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.ops[id]
	if !ok {
		return nil, &service.Problem{Code: service.CodeNotFound, Title: "no such operation"}
	}
	if o.op.WriteInFlight {
		return nil, service.ErrWriteInFlight
	}
	if !o.op.State.Final() {
		o.op.State = service.StateCancelled
		o.op.Problem = &service.Problem{Code: service.CodeCancelled, Title: "cancelled"}
	}
	snap := o.snapshot()
	return &snap, nil
}

func (f *fakeStation) emit(t service.EventType, data any) {
	d, _ := json.Marshal(data)
	var id uint64 = 1
	if n := len(f.events); n > 0 {
		id = f.events[n-1].ID + 1
	}
	e := service.Event{ID: id, Type: t, Time: time.Now().UTC(), Data: d}
	f.events = append(f.events, e)
	if len(f.events) > 4 { // a small ring buffer, so tests can overrun it
		f.events = f.events[1:]
	}
	for _, ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (f *fakeStation) Emit(t service.EventType, data any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emit(t, data)
}

func (f *fakeStation) Subscribe(after uint64) ([]service.Event, bool, <-chan service.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var backlog []service.Event
	lost := len(f.events) > 0 && f.events[0].ID > after+1
	for _, e := range f.events {
		if e.ID > after {
			backlog = append(backlog, e)
		}
	}
	ch := make(chan service.Event, 16)
	f.subSeq++
	n := f.subSeq
	f.subs[n] = ch
	return backlog, lost, ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, n)
	}
}

func (f *fakeStation) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeStation) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}

func (f *fakeStation) Shutdown(context.Context) error { return nil }

var _ service.Station = (*fakeStation)(nil)

// Diagnostics answers a report of the shape station/diag gives (the real
// one runs in the end-to-end tests).
func (f *fakeStation) Diagnostics(ctx context.Context, o service.DiagnosticsOptions) (json.RawMessage, error) {
	f.mu.Lock()
	f.lastDiagLatency = o.Latency
	f.mu.Unlock()
	return json.RawMessage(`{"time":"2026-01-02T03:04:05Z","ok":true,"problems":[],"service":{"reachable":true,"readers":1},` +
		`"readers":[{"name":"Virtual PCD 00 00","role":"card","card_present":false}],"keys":{"provider":"test","configured":true,"test_keys":true},` +
		`"journal":{"state":"ok"},"store":{"state":"ok","audit_chain_ok":true}}`), nil
}
