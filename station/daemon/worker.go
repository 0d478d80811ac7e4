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

	// held is the connection to the card of insertion heldGen: made when
	// the card comes in and kept across that insertion's operations, so an
	// operation starts with its transaction, not with pcscd round trips to
	// connect. A connection is not a transaction: other programs share the
	// card meanwhile. held, heldGen and trace belong to the worker's
	// goroutine alone.
	held    *pcsc.Card
	heldGen uint64
	// trace is the running operation's tracer (the held connection's
	// trace events go to whichever operation uses it).
	trace func(pcsc.TraceEvent)
	// wake tells the worker's goroutine that a card came or went.
	wake chan struct{}
}

func newWorker(id, name, role string, queueSize int) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{id: id, name: name, role: role, queue: make(chan *opState, queueSize+1), ctx: ctx, stop: cancel, done: make(chan struct{}),
		wake: make(chan struct{}, 1)}
}

// poke wakes the worker's goroutine to connect to a new card or let go of
// a removed one (never blocks: one pending wake is enough).
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
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
		d.dropHeld(w)
		if w.pc != nil {
			_ = w.pc.Release()
		}
	}()
	d.askReaderFeatures(w)
	// The held connection is let go after holdIdle without an operation,
	// so another program may then have the card to itself (an exclusive
	// connection) while stationd runs.
	idle := time.NewTimer(holdIdle)
	defer idle.Stop()
	d.holdCard(w)
	for {
		select {
		case <-w.wake:
			d.holdCard(w)
			idle.Reset(holdIdle)
		case <-idle.C:
			d.dropHeld(w)
		case o := <-w.queue:
			if o.job != nil {
				d.runJob(w, o.job)
				continue
			}
			d.execute(w, o)
			idle.Reset(holdIdle)
		case <-w.ctx.Done():
			// Nothing is queued once the context is done (Submit and
			// enqueueJob check w.stopped under d.mu, set before it ends).
			var left []*opState
			for {
				select {
				case o := <-w.queue:
					left = append(left, o)
					continue
				default:
				}
				break
			}
			for _, o := range left {
				o.awaitBegin()
			}
			d.mu.Lock()
			for _, o := range left {
				w.pending--
				if o.job != nil {
					close(o.job.done) // its result stays nil: the reader went away
					continue
				}
				d.finishLocked(o, service.StateFailed, nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away before the operation started", ReaderID: w.id, Retryable: true})
			}
			d.mu.Unlock()
			return
		}
	}
}

// execute runs one operation on the worker's goroutine. Its audit begin
// entry may still be committing (Submit): every way out but the card's
// waits for it, and the card's waits before the first APDU.
func (d *Daemon) execute(w *worker, o *opState) {
	finish := func(st service.State, result any, p *service.Problem) {
		o.awaitBegin()
		d.mu.Lock()
		w.busy = false
		w.pending--
		d.finishLocked(o, st, result, p)
		d.mu.Unlock()
	}
	d.mu.Lock()
	if o.op.State.Final() { // cancelled while queued (so begun)
		w.pending--
		d.mu.Unlock()
		return
	}
	if d.shutting {
		d.mu.Unlock()
		finish(service.StateCancelled, nil, shuttingDown())
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

	out, err := d.onCard(ctx, w, o, cached, gen)

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

	if errors.Is(err, errNotStarted) {
		finish(service.StateCancelled, nil, nil) // finishLocked knows why
		return
	}
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

// onCard runs the work in one transaction on the insertion's held
// connection (connecting when there is none, establishing the worker's
// context when needed); the card is reset when the operation verified a
// PIN or wrote. The connection is kept for the insertion's next
// operation when this one succeeded, and let go otherwise.
func (d *Daemon) onCard(ctx context.Context, w *worker, o *opState, cached *cardInfo, gen uint64) (workOut, error) {
	var wire *conform.Wire
	if o.req.Kind == service.KindConform {
		wire = &conform.Wire{}
	}
	w.trace = func(ev pcsc.TraceEvent) {
		o.apdus.Add(1)
		if wire != nil {
			wire.Trace(ev)
		}
	}
	defer func() { w.trace = nil }()
	card, reused, err := d.cardOf(ctx, w, gen)
	if err != nil {
		return workOut{}, err
	}
	keep := false
	defer func() {
		if card == nil { // a new connection failed after a stale one
			return
		}
		if keep && w.role == RoleCard {
			w.held, w.heldGen = card, gen
			return
		}
		if w.held == card {
			w.held = nil
		}
		_ = card.Close()
	}()
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
		// The PSAM is a card too: touched only once the record is in.
		if err := d.begun(ctx, o); err != nil {
			return workOut{}, err
		}
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

	// Card steps carry cardapp's stable ids (e.g. "update:EF06:2"), which
	// integrators may key on; the technician runs name theirs by index.
	progress := func(index, total int, step string) { d.progress(o, index, total, "", step) }
	ctx = cardapp.WithStepProgress(ctx, func(index, total int, st cardapp.Step) { d.progress(o, index, total, st.ID, st.Name) })
	ctx = context.WithValue(ctx, extrasKey{}, &opExtras{progress: progress, wire: wire})
	var out workOut
	run := func(card *pcsc.Card) error {
		return card.Transaction(ctx, func(ctx context.Context) error {
			// The transaction opened while the audit begin entry was
			// committing; the first APDU waits for it.
			if err := d.begun(ctx, o); err != nil {
				return err
			}
			if resetsCard(o.req.Kind) {
				card.ResetAtEnd()
			}
			var werr error
			out, werr = d.cardWork(ctx, card, w, o.req, kp, cached)
			return werr
		})
	}
	before := o.apdus.Load()
	err = run(card)
	if err != nil && reused && o.apdus.Load() == before && staleConnection(err) {
		// The held connection went stale before any APDU (the card was
		// pulled and put back, pcscd restarted, a driver reset it):
		// nothing reached the card, so a new connection runs it.
		w.held = nil
		_ = card.Close()
		if card, err = d.connect(ctx, w); err == nil {
			err = run(card)
		}
	}
	if err != nil {
		d.dropContextOn(w, err)
		return out, err
	}
	keep = true
	return out, nil
}

// connectOptions are the card connections' options: shared (other
// programs may use the card between our transactions), the card left as
// it is at disconnect, trace events to the running operation.
func (d *Daemon) connectOptions(w *worker) pcsc.ConnectOptions {
	return pcsc.ConnectOptions{Share: pcsc.ShareShared, Protocols: pcsc.ProtocolAny, OnClose: pcsc.LeaveCard, Tracer: func(ev pcsc.TraceEvent) {
		w.apdus.Add(1)
		if w.trace != nil {
			w.trace(ev)
		}
	}}
}

// connect makes a new connection to the worker's card.
func (d *Daemon) connect(ctx context.Context, w *worker) (*pcsc.Card, error) {
	if err := d.ensureContext(w); err != nil {
		return nil, err
	}
	card, err := w.pc.Connect(ctx, w.name, d.connectOptions(w))
	if err != nil {
		d.dropContextOn(w, err)
		return nil, err
	}
	return card, nil
}

// cardOf is the connection an operation on insertion gen runs on: the
// held one (reused) when it belongs to that insertion, else a new one.
func (d *Daemon) cardOf(ctx context.Context, w *worker, gen uint64) (card *pcsc.Card, reused bool, err error) {
	if w.held != nil && w.heldGen == gen {
		return w.held, true, nil
	}
	d.dropHeld(w)
	card, err = d.connect(ctx, w)
	return card, false, err
}

// holdIdle is how long a held connection outlives its insertion's last
// operation (or the insertion itself).
const holdIdle = 15 * time.Second

// holdCard, on the worker's goroutine when a card came or went, lets go
// of a connection to a card no longer in the reader and connects to the
// one now in it, so that its first operation finds the connection made.
// A failure is left to the first operation (which connects again and
// reports it).
func (d *Daemon) holdCard(w *worker) {
	d.mu.Lock()
	present, gen, stopping := w.present, w.gen, w.stopped || d.shutting
	d.mu.Unlock()
	if w.held != nil && w.heldGen != gen {
		d.dropHeld(w)
	}
	if !present || stopping || w.held != nil || w.role != RoleCard {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	if card, err := d.connect(ctx, w); err == nil {
		w.held, w.heldGen = card, gen
	}
}

// dropHeld closes the held connection (the card is left as it is).
func (d *Daemon) dropHeld(w *worker) {
	if w.held != nil {
		_ = w.held.Close()
		w.held = nil
	}
}

// staleConnection: the error says the connection, not the operation,
// failed (the card it was made to is gone or reset, or the service went
// away and came back).
func staleConnection(err error) bool {
	var pe *pcsc.Error
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Kind {
	case pcsc.KindCardRemoved, pcsc.KindNoCard, pcsc.KindCardReset, pcsc.KindServiceGone, pcsc.KindReaderGone:
		return true
	}
	return false
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
func (d *Daemon) progress(o *opState, index, total int, id, step string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range o.op.Steps {
		if o.op.Steps[i].State == "started" {
			o.op.Steps[i].State = "done"
		}
	}
	if id == "" {
		id = fmt.Sprintf("%d:%s", index, step)
	}
	o.op.Steps = append(o.op.Steps, service.Step{ID: id, Name: step, State: "started"})
	if total > 0 {
		o.op.Progress = float64(index-1) / float64(total)
	}
	o.op.Updated = time.Now().UTC()
	d.hub.publish(service.EventOperationProgress, map[string]any{"operation_id": o.op.ID, "reader_id": o.op.ReaderID,
		"step": step, "step_id": id, "index": index, "total": total, "progress": o.op.Progress})
}

// safeText is an error's text for the log with any ID number masked.
func safeText(err error) string { return cardText(err) }
