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
	"ssstation/station/conform"
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
	// asked once: when the worker starts, else at the first connection);
	// padCaps says which of verify and change it takes.
	pinpad      bool
	padCaps     pcsc.PINPadCaps
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
	d.askReaderFeatures(w)
	for {
		select {
		case o := <-w.queue:
			if o.job != nil {
				d.runJob(w, o.job)
				continue
			}
			d.execute(w, o)
		case <-w.ctx.Done():
			d.mu.Lock()
			for {
				select {
				case o := <-w.queue:
					w.pending--
					if o.job != nil {
						close(o.job.done) // its result stays nil: the reader went away
						continue
					}
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
	if err := d.ensureContext(w); err != nil {
		return workOut{}, err
	}
	var wire *conform.Wire
	if o.req.Kind == service.KindConform {
		wire = &conform.Wire{}
	}
	tracer := func(ev pcsc.TraceEvent) {
		w.apdus.Add(1)
		o.apdus.Add(1)
		if wire != nil {
			wire.Trace(ev)
		}
	}
	card, err := w.pc.Connect(ctx, w.name, pcsc.ConnectOptions{Share: pcsc.ShareShared, Protocols: pcsc.ProtocolAny, OnClose: pcsc.LeaveCard, Tracer: tracer})
	if err != nil {
		d.dropContextOn(w, err)
		return workOut{}, err
	}
	defer card.Close()
	d.mu.Lock()
	ask := !w.askFeatures
	w.askFeatures = true
	d.mu.Unlock()
	if ask {
		caps := d.padOf(card).PINPad(ctx)
		d.mu.Lock()
		w.pinpad = caps.Any()
		w.padCaps = caps
		d.mu.Unlock()
	}

	var kp keys.Provider = d.opts.Keys
	// The conformance kit adds its key checks when keys are at hand and
	// runs without them otherwise.
	optional := o.req.Kind == service.KindConform
	if kp == nil && needsKeys(o.req.Kind) && d.opts.PSAM != nil {
		name := d.psamReaderName()
		var pcard *pcsc.Card
		var err error
		if name != "" {
			pcard, err = w.pc.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
		}
		switch {
		case name == "" && !optional:
			return workOut{}, &service.Problem{Code: service.CodeNoKeyProvider, Title: "the PSAM reader is not connected", ReaderID: w.id, Retryable: true}
		case err != nil && !optional:
			return workOut{}, &service.Problem{Code: service.CodeKeyProviderFailed, Title: "the PSAM cannot be reached", ReaderID: w.id, Retryable: true}
		case pcard != nil && err == nil:
			prov := d.opts.PSAM(pcard)
			defer func() { prov.Close(); pcard.Close() }()
			kp = prov
		}
	}

	progress := func(index, total int, step string) { d.progress(o, index, total, step) }
	ctx = cardapp.WithProgress(ctx, progress)
	ctx = context.WithValue(ctx, extrasKey{}, &opExtras{progress: progress, wire: wire})
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

// ensureContext establishes the worker's PC/SC context when it has none
// (or the service forgot it). Called on the worker's goroutine only.
func (d *Daemon) ensureContext(w *worker) error {
	if w.pc != nil && w.pc.Valid() {
		return nil
	}
	if w.pc != nil {
		_ = w.pc.Release()
		w.pc = nil
	}
	pc, err := pcsc.Establish()
	if err != nil {
		d.countPCSCError()
		return err
	}
	w.pc = pc
	return nil
}

// askReaderFeatures learns whether the reader has a PIN pad before any
// card is in it (direct mode, no APDU), so that GET /v1/readers reports
// it from the start. A driver that refuses direct connections is asked
// again at the first card connection.
func (d *Daemon) askReaderFeatures(w *worker) {
	if w.role != RoleCard || d.padFor != nil || d.ensureContext(w) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	_, rf, err := w.pc.ReaderInfo(ctx, w.name)
	if err != nil || rf == nil {
		return
	}
	d.mu.Lock()
	if !w.askFeatures {
		w.askFeatures = true
		w.pinpad = rf.PINPad.Any()
		w.padCaps = rf.PINPad
	}
	d.mu.Unlock()
}

// job is work that is not a card operation (diagnostics) queued on a
// reader's worker, so that it waits its turn behind the operations
// queued before it and never competes with them for the reader.
type job struct {
	ctx  context.Context
	run  func(ctx context.Context, pc *pcsc.Context, err error)
	done chan struct{}
}

// enqueueJob queues j on w like an operation (it takes a queue slot).
func (d *Daemon) enqueueJob(w *worker, j *job) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.shutting:
		return shuttingDown()
	case w.stopped:
		return &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away", ReaderID: w.id, Retryable: true}
	case w.pending >= d.opts.QueueSize+1:
		return &service.Problem{Code: service.CodeReaderBusy, Title: "the reader's queue is full", ReaderID: w.id, Retryable: true, RetryAfter: 2 * time.Second, LegacyCode: -11}
	}
	w.pending++
	w.queue <- &opState{job: j, w: w}
	return nil
}

// runJob runs a queued job on the worker's goroutine.
func (d *Daemon) runJob(w *worker, j *job) {
	d.mu.Lock()
	w.busy = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		w.busy = false
		w.pending--
		d.cond.Broadcast()
		d.mu.Unlock()
		close(j.done)
	}()
	d.mu.Lock()
	shutting := d.shutting
	d.mu.Unlock()
	if j.ctx.Err() != nil || shutting {
		return // the caller stopped waiting, or the station is stopping
	}
	err := d.ensureContext(w)
	j.run(j.ctx, w.pc, err)
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
