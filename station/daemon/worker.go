package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/pcsc"
	"ssstation/station/service"
)

// worker is one reader: its queue and what is known of its card. Its
// fields are guarded by Daemon.mu, except pc, which belongs to the
// worker's goroutine alone (a PC/SC context is used by one goroutine).
type worker struct {
	id, name, role string
	queue          chan *opState
	stop           context.CancelFunc
	ctx            context.Context
	done           chan struct{}
	stopped        bool

	pending int // queued + running
	busy    bool
	present bool
	atr     []byte
	gen     uint64 // changes with every insertion and removal
	cache   *cardInfo
	profile string
	inserts uint64
	apdus   atomic.Uint64
	// pinpad: the reader offers PIN entry on its keys (part 10 features,
	// asked once at the first connection).
	pinpad      bool
	askFeatures bool

	pc *pcsc.Context // the worker goroutine's own context
}

func newWorker(id, name, role string, queueSize int) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{id: id, name: name, role: role, queue: make(chan *opState, queueSize+1), ctx: ctx, stop: cancel, done: make(chan struct{})}
}

// stopWorkerLocked ends a worker: its goroutine fails what is still
// queued and releases its context.
func (d *Daemon) stopWorkerLocked(w *worker) {
	if w.stopped {
		return
	}
	w.stopped = true
	w.stop()
	if w.role == RoleIgnore {
		close(w.done)
	}
}

func (d *Daemon) runWorker(w *worker) {
	defer d.workers.Done()
	defer close(w.done)
	defer func() {
		if w.pc != nil {
			_ = w.pc.Release()
		}
	}()
	for {
		select {
		case o := <-w.queue:
			d.execute(w, o)
		case <-w.ctx.Done():
			d.mu.Lock()
			for {
				select {
				case o := <-w.queue:
					w.pending--
					d.finishLocked(o, service.StateFailed, nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away before the operation started", ReaderID: w.id, Retryable: true})
					continue
				default:
				}
				break
			}
			d.mu.Unlock()
			return
		}
	}
}

// execute runs one operation on the worker's goroutine.
func (d *Daemon) execute(w *worker, o *opState) {
	d.mu.Lock()
	if o.op.State.Final() { // cancelled while queued
		w.pending--
		d.mu.Unlock()
		return
	}
	if d.shutting {
		w.pending--
		d.finishLocked(o, service.StateCancelled, nil, shuttingDown())
		d.mu.Unlock()
		return
	}
	w.busy = true
	o.op.State, o.op.Updated = service.StateRunning, time.Now().UTC()
	o.op.WriteInFlight = o.op.Kind.Writes()
	ctx, cancel := context.WithCancel(d.base)
	o.cancel = cancel
	gen := w.gen
	var cached *cardInfo
	if w.cache != nil && w.cache.gen == gen {
		cached = w.cache
	}
	present := w.present
	d.mu.Unlock()
	defer cancel()

	finish := func(st service.State, result any, p *service.Problem) {
		d.mu.Lock()
		w.busy = false
		w.pending--
		d.finishLocked(o, st, result, p)
		d.mu.Unlock()
	}

	// A re-read while the card stays in is answered from the cache: 0 APDUs.
	if cached != nil && (o.req.Kind == service.KindRead || (o.req.Kind == service.KindReadFull && cached.full)) {
		info := cached.info
		if o.req.Kind == service.KindRead && cached.full {
			cp := *info
			cp.Holder = nil
			info = &cp
		}
		d.mu.Lock()
		o.cardID = info.CardID
		if info.SSN != "" {
			o.ssnMasked = cardapp.MaskedSSN(info.SSN)
		}
		d.mu.Unlock()
		finish(service.StateDone, d.readResult(info, true, o.req.Caller), nil)
		return
	}
	if !present {
		finish(service.StateFailed, nil, &service.Problem{Code: service.CodeCardAbsent, Title: "no card in the reader", ReaderID: w.id, LegacyCode: -2, Retryable: true})
		return
	}

	out, err := d.onCard(ctx, w, o, cached)

	d.mu.Lock()
	if out.cardID != "" {
		o.cardID = out.cardID
	}
	if out.ssnMasked != "" {
		o.ssnMasked = out.ssnMasked
	}
	if out.journalOp != "" {
		o.op.JournalOp = out.journalOp
	}
	if resetsCard(o.req.Kind) {
		w.cache = nil
	}
	if err == nil && out.cache != nil && w.gen == gen {
		out.cache.gen = gen
		w.cache = out.cache
	}
	d.mu.Unlock()

	if err != nil {
		p := problemFor(err, w.id)
		st := service.StateFailed
		switch {
		case p.Code == service.CodeInterrupted:
			st = service.StateInterrupted
		case p.Code == service.CodeCancelled:
			st = service.StateCancelled
		case o.req.Kind.Writes() && (p.Code == service.CodeCardRemoved || p.Code == service.CodePCSCUnavailable || p.Code == service.CodeReaderNotFound):
			// A write cut short: its outcome on the card is unknown.
			st = service.StateInterrupted
		}
		if p.Code == service.CodeInternal {
			d.log.Error().Str("event", "operation.error").Str("op", o.op.ID).Str("reader_id", w.id).
				Str("error", safeText(err)).Msg("operation failed unexpectedly")
		}
		finish(st, nil, p)
		return
	}
	finish(service.StateDone, out.result, nil)
}

// onCard connects (establishing the worker's context when needed), runs
// the work in one transaction and lets the card go; the card is reset
// when the operation verified a PIN or wrote.
func (d *Daemon) onCard(ctx context.Context, w *worker, o *opState, cached *cardInfo) (workOut, error) {
	if w.pc == nil || !w.pc.Valid() {
		if w.pc != nil {
			_ = w.pc.Release()
			w.pc = nil
		}
		pc, err := pcsc.Establish()
		if err != nil {
			d.countPCSCError()
			return workOut{}, err
		}
		w.pc = pc
	}
	tracer := func(ev pcsc.TraceEvent) {
		w.apdus.Add(1)
		o.apdus.Add(1)
	}
	card, err := w.pc.Connect(ctx, w.name, pcsc.ConnectOptions{Share: pcsc.ShareShared, Protocols: pcsc.ProtocolAny, OnClose: pcsc.LeaveCard, Tracer: tracer})
	if err != nil {
		d.dropContextOn(w, err)
		return workOut{}, err
	}
	defer card.Close()
	if !w.askFeatures {
		w.askFeatures = true
		if rf, err := card.Features(ctx); err == nil {
			d.mu.Lock()
			w.pinpad = rf.PINPad.Any()
			d.mu.Unlock()
		}
	}

	var kp keys.Provider = d.opts.Keys
	if kp == nil && needsKeys(o.req.Kind) && d.opts.PSAM != nil {
		name := d.psamReaderName()
		if name == "" {
			return workOut{}, &service.Problem{Code: service.CodeNoKeyProvider, Title: "the PSAM reader is not connected", ReaderID: w.id, Retryable: true}
		}
		pcard, err := w.pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
		if err != nil {
			return workOut{}, &service.Problem{Code: service.CodeKeyProviderFailed, Title: "the PSAM cannot be reached", ReaderID: w.id, Retryable: true}
		}
		prov := d.opts.PSAM(pcard)
		defer func() { prov.Close(); pcard.Close() }()
		kp = prov
	}

	ctx = cardapp.WithProgress(ctx, func(index, total int, step string) { d.progress(o, index, total, step) })
	var out workOut
	err = card.Transaction(ctx, func(ctx context.Context) error {
		if resetsCard(o.req.Kind) {
			card.ResetAtEnd()
		}
		var werr error
		out, werr = d.cardWork(ctx, card, w, o.req, kp, cached)
		return werr
	})
	if err != nil {
		d.dropContextOn(w, err)
	}
	return out, err
}

func (d *Daemon) psamReaderName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.readers {
		if r.role == RolePSAM {
			return r.name
		}
	}
	return ""
}

// dropContextOn forgets the worker's context when the service went away,
// so the next operation establishes a new one.
func (d *Daemon) dropContextOn(w *worker, err error) {
	switch pcsc.KindOf(err) {
	case pcsc.KindServiceGone, pcsc.KindReaderGone:
		if w.pc != nil {
			_ = w.pc.Release()
			w.pc = nil
		}
		d.countPCSCError()
	case pcsc.KindOther, pcsc.KindUnresponsive, pcsc.KindProtocol, pcsc.KindSharing:
		var pe *pcsc.Error
		if errors.As(err, &pe) {
			d.countPCSCError()
		}
	}
}

func (d *Daemon) countPCSCError() {
	d.mu.Lock()
	d.pcscErrors++
	d.mu.Unlock()
}

// progress records a step as it starts and sends the progress event.
func (d *Daemon) progress(o *opState, index, total int, step string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range o.op.Steps {
		if o.op.Steps[i].State == "started" {
			o.op.Steps[i].State = "done"
		}
	}
	id := fmt.Sprintf("%d:%s", index, step)
	o.op.Steps = append(o.op.Steps, service.Step{ID: id, Name: step, State: "started"})
	if total > 0 {
		o.op.Progress = float64(index-1) / float64(total)
	}
	o.op.Updated = time.Now().UTC()
	d.hub.publish(service.EventOperationProgress, map[string]any{"operation_id": o.op.ID, "reader_id": o.op.ReaderID,
		"step": step, "index": index, "total": total, "progress": o.op.Progress})
}

// safeText is an error's text for the log with any ID number masked.
func safeText(err error) string { return cardText(err) }
