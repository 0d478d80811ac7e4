// Package daemon is stationd's core: one worker per reader, each with a
// PC/SC context of its own, created and removed as pcsc.Monitor reports
// readers coming and going; a bounded queue per reader so operations on
// one card run one at a time; card info cached per insertion; the audit
// record written before any card is touched; events for the API's
// Server-Sent Events. It implements service.Station.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/journal"
	"ssstation/station/secret"
	"ssstation/station/service"
	"ssstation/station/store"
)

// Reader roles.
const (
	RoleCard   = "card"
	RolePSAM   = "psam"
	RoleIgnore = "ignore"
)

// Options are what the daemon runs with.
type Options struct {
	Profiles *profiles.Set
	// Keys is the software key provider; nil when the keys are in a PSAM.
	Keys keys.Provider
	// PSAM wraps a connection to the PSAM reader (role "psam") in a key
	// provider; used when Keys is nil.
	PSAM func(card *pcsc.Card) keys.Provider
	// PSAMReader names the PSAM's reader (exact name or a unique part)
	// when no reader is mapped with role "psam".
	PSAMReader string

	Store   *store.Store
	Audit   *audit.Log
	Journal *journal.Store
	// Secret keys the journal's digests (station/secret.Load beside the store).
	Secret *secret.Key

	Readers   []config.ReaderConfig
	QueueSize int // waiting operations per reader (4 when zero)

	TerminalNo, DeviceNo string
	Logger               zerolog.Logger
	// MonitorRetry is the pause between attempts to reach a lost pcscd.
	MonitorRetry time.Duration
	// Version is reported in events and logs.
	Version string
	// Diagnostics: the configuration and key source the diagnosis reports.
	Diagnostics DiagnosticsInfo
	// TestKeys: the key provider holds the public test keys; read
	// results say so (test_keys) and the log says so at start.
	TestKeys bool
	// OperationRetention: finished operations stored longer ago than this
	// are pruned from the store (DefaultOperationRetention when zero; a
	// negative value keeps them for ever).
	OperationRetention time.Duration
}

// Daemon implements service.Station.
type Daemon struct {
	opts Options
	log  zerolog.Logger
	hub  *hub

	mu       sync.Mutex
	cond     *sync.Cond // signalled when an operation ends or a worker goes idle
	readers  map[string]*worker
	pcscUp   bool
	version  uint64
	ops      map[string]*opState
	opOrder  []string
	shutting bool
	started  bool
	// pcscErrors counts losses of the smart card service and PC/SC failures.
	pcscErrors uint64
	metrics    *metrics

	base       context.Context // operations' parent: cancelled only when shutdown gives up
	baseCancel context.CancelFunc
	workers    sync.WaitGroup
	readyCh    chan struct{}
	readyOnce  sync.Once

	// padFor, in tests, puts an emulated PIN pad in front of a card (no
	// virtual PIN pad exists); nil: the reader's own (part 10).
	padFor func(card *pcsc.Card) cardapp.PINPad
}

var bucketOps = []byte("daemon-operations")

// keepOps is how many operations are kept in memory (older ones are read
// back from the store).
const keepOps = 512

// New prepares a daemon; Run starts it.
func New(opts Options) (*Daemon, error) {
	if opts.Profiles == nil || opts.Store == nil || opts.Audit == nil || opts.Journal == nil || opts.Secret == nil {
		return nil, errors.New("daemon: profiles, store, audit, journal and the station secret are required")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4
	}
	if err := opts.Store.DB().Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketOps)
		return err
	}); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	// The PSAM must not be a reader holders' cards go into: an operation
	// would then talk to the PSAM as to a holder's card, and the key
	// provider would lose its card to the counter.
	if opts.PSAMReader != "" {
		for _, rc := range opts.Readers {
			if roleOr(rc.Role) != RoleCard || rc.Name == "" {
				continue
			}
			if rc.Name == opts.PSAMReader || strings.Contains(rc.Name, opts.PSAMReader) || strings.Contains(opts.PSAMReader, rc.Name) {
				return nil, fmt.Errorf("daemon: reader %q (id %s) is mapped as a card reader but it is the PSAM's reader %q: give it role \"psam\" or name another PSAM reader", rc.Name, rc.ID, opts.PSAMReader)
			}
		}
	}
	d := &Daemon{opts: opts, log: opts.Logger, hub: newHub(1024), readers: map[string]*worker{}, ops: map[string]*opState{}, readyCh: make(chan struct{})}
	if opts.Audit.OnLaterError == nil {
		opts.Audit.OnLaterError = func(begin uint64, _ error) {
			d.log.Error().Str("event", "audit.unavailable").Uint64("audit_begin", begin).
				Msg("audit end entry or stored operation not written (committed after the answer)")
		}
	}
	d.cond = sync.NewCond(&d.mu)
	d.base, d.baseCancel = context.WithCancel(context.Background())
	d.prune(time.Now())
	if opts.TestKeys {
		d.log.Warn().Str("event", "test_keys").Bool("test_keys", true).
			Msg("TEST KEYS: this station uses the public test keys; cards it writes are not genuine and no production card will accept them")
	}
	return d, nil
}

// Run watches the readers until ctx ends, then stops every worker.
func (d *Daemon) Run(ctx context.Context) error {
	if pc, err := pcsc.Establish(); err == nil {
		names, lerr := pc.Readers()
		pc.Release()
		d.mu.Lock()
		d.pcscUp = lerr == nil
		d.mu.Unlock()
		if lerr == nil && len(names) == 0 {
			d.markReady()
		}
	} else {
		d.log.Warn().Str("event", "pcsc.down").Msg("smart card service unavailable at start; waiting for it")
		d.markReady()
	}
	d.mu.Lock()
	d.started = true
	d.mu.Unlock()
	events := make(chan pcsc.Event, 64)
	mon := &pcsc.Monitor{Retry: d.opts.MonitorRetry}
	monDone := make(chan struct{})
	go func() { defer close(monDone); _ = mon.Run(ctx, events) }()
	pruneTick := time.NewTicker(pruneEvery)
	defer pruneTick.Stop()
	for {
		select {
		case now := <-pruneTick.C:
			d.prune(now)
		case ev := <-events:
			d.handle(ev)
		case <-ctx.Done():
			// The monitor ends with SCardCancel on its context; a cancel
			// that lands just before its wait begins is lost until that
			// wait times out, so Run does not wait for it (its emits give
			// up on ctx, and it releases its own context).
			d.stopAll()
			return nil
		case <-monDone:
			d.stopAll()
			return nil
		}
	}
}

func (d *Daemon) markReady() { d.readyOnce.Do(func() { close(d.readyCh) }) }

// Started is closed once the first reader listing was taken in (for
// time-to-ready measurements and tests).
func (d *Daemon) Started() <-chan struct{} { return d.readyCh }

// readerID is the reader's stable id and role: from the configuration,
// else "r-" and a short hash of the name (never the raw name).
func (d *Daemon) readerID(name string) (string, string) {
	isPSAM := d.opts.PSAMReader != "" && (name == d.opts.PSAMReader || strings.Contains(name, d.opts.PSAMReader))
	mapped := func(rc config.ReaderConfig) (string, string) {
		role := roleOr(rc.Role)
		if isPSAM && role == RoleCard {
			// Refused at start when the names say so; a unique part that
			// matched both at run time is refused here: the reader is
			// left alone rather than taken for a card reader.
			d.log.Error().Str("event", "reader.refused").Str("reader_id", rc.ID).
				Msg("this reader is mapped as a card reader but holds the PSAM: ignored")
			role = RoleIgnore
		}
		return rc.ID, role
	}
	for _, rc := range d.opts.Readers {
		if rc.Name == name {
			return mapped(rc)
		}
	}
	for _, rc := range d.opts.Readers {
		if rc.Name != "" && strings.Contains(name, rc.Name) {
			return mapped(rc)
		}
	}
	sum := sha256.Sum256([]byte(name))
	role := RoleCard
	if isPSAM {
		role = RolePSAM
	}
	return "r-" + hex.EncodeToString(sum[:])[:10], role
}

func roleOr(r string) string {
	switch r {
	case RolePSAM, RoleIgnore:
		return r
	}
	return RoleCard
}

func (d *Daemon) handle(ev pcsc.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.version++
	switch ev.Type {
	case pcsc.ReaderAdded:
		d.pcscUp = true
		id, role := d.readerID(ev.Reader)
		if old, ok := d.readers[id]; ok {
			d.stopWorkerLocked(old)
		}
		w := newWorker(id, ev.Reader, role, d.opts.QueueSize)
		d.readers[id] = w
		if role != RoleIgnore {
			d.workers.Add(1)
			go d.runWorker(w)
		}
		d.log.Info().Str("event", "reader.added").Str("reader_id", id).Str("role", role).Msg("reader added")
		d.hub.publish(service.EventReaderAdded, map[string]any{"reader_id": id, "name": ev.Reader, "role": role})
		d.checkReadyLocked()
	case pcsc.ReaderRemoved:
		w := d.byNameLocked(ev.Reader)
		if w == nil {
			return
		}
		delete(d.readers, w.id)
		d.stopWorkerLocked(w)
		d.log.Info().Str("event", "reader.removed").Str("reader_id", w.id).Msg("reader removed")
		d.hub.publish(service.EventReaderRemoved, map[string]any{"reader_id": w.id})
	case pcsc.CardInserted:
		w := d.byNameLocked(ev.Reader)
		if w == nil {
			return
		}
		w.present, w.atr, w.cache = true, append([]byte(nil), ev.ATR...), nil
		w.gen++
		w.profile = ""
		if p := d.profileFor(w.atr); p != nil {
			w.profile = p.Name
		}
		w.inserts++
		w.poke()
		d.log.Info().Str("event", "card.inserted").Str("reader_id", w.id).Str("profile", w.profile).Msg("card inserted")
		d.hub.publish(service.EventCardInserted, map[string]any{"reader_id": w.id, "atr": fmt.Sprintf("%X", w.atr), "profile": w.profile})
		d.checkReadyLocked()
	case pcsc.CardRemoved:
		w := d.byNameLocked(ev.Reader)
		if w == nil {
			return
		}
		w.present, w.atr, w.cache, w.profile = false, nil, nil, ""
		w.gen++
		w.poke()
		d.log.Info().Str("event", "card.removed").Str("reader_id", w.id).Msg("card removed")
		d.hub.publish(service.EventCardRemoved, map[string]any{"reader_id": w.id})
	case pcsc.ServiceLost:
		if d.pcscUp || !d.started {
			d.log.Warn().Str("event", "pcsc.down").Msg("smart card service lost; operations answer PCSC_UNAVAILABLE until it returns")
		}
		wasUp := d.pcscUp
		d.pcscUp = false
		d.pcscErrors++
		if wasUp {
			d.hub.publish(service.EventPCSCDown, map[string]any{})
		}
		d.markReady()
	case pcsc.ServiceRestored:
		d.pcscUp = true
		d.log.Info().Str("event", "pcsc.up").Msg("smart card service back")
		d.hub.publish(service.EventPCSCUp, map[string]any{})
	}
	d.cond.Broadcast()
}

// checkReadyLocked marks the daemon ready once it holds a reader (the
// monitor reports every reader and card already present at start).
func (d *Daemon) checkReadyLocked() {
	if len(d.readers) > 0 {
		d.markReady()
	}
}

func (d *Daemon) byNameLocked(name string) *worker {
	for _, w := range d.readers {
		if w.name == name {
			return w
		}
	}
	return nil
}

func (d *Daemon) stopAll() {
	d.mu.Lock()
	for id, w := range d.readers {
		delete(d.readers, id)
		d.stopWorkerLocked(w)
	}
	d.mu.Unlock()
	d.workers.Wait()
	d.opts.Audit.Flush()
}

// Readers lists the readers.
func (d *Daemon) Readers(ctx context.Context) (*service.Readers, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := &service.Readers{Version: d.version, PCSCUp: d.pcscUp, Readers: []service.Reader{}}
	for _, w := range d.readers {
		out.Readers = append(out.Readers, d.readerLocked(w))
	}
	sort.Slice(out.Readers, func(i, j int) bool { return out.Readers[i].ID < out.Readers[j].ID })
	return out, nil
}

func (d *Daemon) readerLocked(w *worker) service.Reader {
	r := service.Reader{ID: w.id, Name: w.name, Role: w.role, CardPresent: w.present, Profile: w.profile, Busy: w.busy, QueueLength: w.pending, PINPad: w.pinpad}
	if w.busy {
		r.QueueLength--
	}
	if len(w.atr) > 0 {
		r.ATR = fmt.Sprintf("%X", w.atr)
	}
	return r
}

// Reader shows one reader.
func (d *Daemon) Reader(ctx context.Context, id string) (*service.Reader, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.readers[id]
	if !ok {
		return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "no reader with this id", ReaderID: id}
	}
	r := d.readerLocked(w)
	return &r, nil
}

// Stats are counters for metrics and tests.
type Stats struct {
	APDUs       map[string]uint64 `json:"apdus"`        // per reader id
	CardInserts map[string]uint64 `json:"card_inserts"` // per reader id
	PCSCErrors  uint64            `json:"pcsc_errors"`
	PCSCUp      bool              `json:"pcsc_up"`
}

// Stats returns the counters since start.
func (d *Daemon) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Stats{APDUs: map[string]uint64{}, CardInserts: map[string]uint64{}, PCSCErrors: d.pcscErrors, PCSCUp: d.pcscUp}
	for id, w := range d.readers {
		s.APDUs[id] = w.apdus.Load()
		s.CardInserts[id] = w.inserts
	}
	return s
}

// Submit queues an operation.
func (d *Daemon) Submit(ctx context.Context, req service.Request) (*service.Operation, error) {
	if req.PINEntry == "" {
		req.PINEntry = service.PINEntryHost
	}
	d.mu.Lock()
	w, err := d.pickLocked(&req)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	atr := append([]byte(nil), w.atr...)
	pad := padState{known: w.askFeatures, caps: w.padCaps}
	d.mu.Unlock()

	if err := d.precheck(&req, atr, pad); err != nil {
		p, _ := service.AsProblem(err)
		p.ReaderID = w.id
		return nil, p
	}

	d.mu.Lock()
	if d.shutting {
		d.mu.Unlock()
		return nil, shuttingDown()
	}
	if w.stopped {
		d.mu.Unlock()
		return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away", ReaderID: w.id, Retryable: true}
	}
	if w.pending >= d.opts.QueueSize+1 {
		d.mu.Unlock()
		return nil, &service.Problem{Code: service.CodeReaderBusy, Title: "the reader's queue is full", Detail: "retry after the operations in progress",
			ReaderID: w.id, Retryable: true, RetryAfter: 2 * time.Second, LegacyCode: -11}
	}
	w.pending++
	now := time.Now().UTC()
	o := &opState{req: req, w: w, done: make(chan struct{}), begun: make(chan struct{})}
	o.op = service.Operation{ID: newOpID(), Kind: req.Kind, ReaderID: w.id, State: service.StateQueued, Created: now, Updated: now, JournalOp: req.OpID}
	// The worker may take the operation while its audit begin entry
	// commits below: it gets ready (the connection, the card transaction's
	// start) meanwhile and sends no APDU before begun is closed with the
	// entry durable (Daemon.begun). From here the worker owns the queue
	// slot: it ends the operation whatever happens below.
	w.queue <- o // never blocks: pending reserved a slot
	d.mu.Unlock()

	seq, err := d.opts.Audit.Begin(audit.Begin{TokenName: req.Caller.TokenName, Role: string(req.Caller.Role), Operator: req.Caller.OperatorID,
		RequestID: req.Caller.RequestID, Reader: w.id, Operation: string(req.Kind), OpID: o.op.ID})
	if err != nil {
		o.beginErr = err
		close(o.begun) // the worker lets it go: no APDU, no record
		d.log.Error().Str("event", "audit.unavailable").Str("reader_id", w.id).Str("kind", string(req.Kind)).Msg("audit record not written; operation refused")
		return nil, &service.Problem{Code: service.CodeAuditUnavailable, Title: "the audit trail cannot be written", Detail: "no card operation starts without its audit record",
			ReaderID: w.id, Retryable: true, RetryAfter: 5 * time.Second}
	}
	o.auditSeq = seq

	d.mu.Lock()
	if w.stopped || d.shutting {
		defer d.mu.Unlock()
		// Refused after all: the worker ends it as cancelled (its audit
		// record says so) without touching the card.
		o.refusal = shuttingDown()
		if !d.shutting {
			o.refusal = &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away", ReaderID: w.id, Retryable: true}
		}
		close(o.begun)
		return nil, o.refusal
	}
	d.ops[o.op.ID] = o
	d.opOrder = append(d.opOrder, o.op.ID)
	d.pruneLocked()
	// Closed under d.mu: an operation in d.ops has its begin entry.
	close(o.begun)
	snap := o.snapshot()
	d.mu.Unlock()
	d.log.Info().Str("event", "operation.queued").Str("op", o.op.ID).Str("kind", string(req.Kind)).Str("reader_id", w.id).
		Str("request_id", req.Caller.RequestID).Str("token", req.Caller.TokenName).Msg("operation queued")
	return &snap, nil
}

func shuttingDown() *service.Problem {
	return &service.Problem{Code: service.CodeShuttingDown, Title: "the station is shutting down", Retryable: true, RetryAfter: 5 * time.Second}
}

// pickLocked finds the reader for a request.
func (d *Daemon) pickLocked(req *service.Request) (*worker, error) {
	if d.shutting {
		return nil, shuttingDown()
	}
	if !d.pcscUp {
		return nil, &service.Problem{Code: service.CodePCSCUnavailable, Title: "the smart card service is unavailable", Detail: "the station reconnects by itself when it returns",
			Retryable: true, RetryAfter: 2 * time.Second, LegacyCode: -11, ReaderID: req.ReaderID}
	}
	if req.ReaderID != "" {
		w, ok := d.readers[req.ReaderID]
		if !ok || w.role == RoleIgnore || (w.role == RolePSAM && req.Kind != service.KindAPDU) {
			return nil, &service.Problem{Code: service.CodeReaderNotFound, Title: "no card reader with this id", ReaderID: req.ReaderID}
		}
		if !w.present {
			return nil, &service.Problem{Code: service.CodeCardAbsent, Title: "no card in the reader", ReaderID: w.id, LegacyCode: -2, Retryable: true}
		}
		return w, nil
	}
	var cands []*worker
	for _, w := range d.readers {
		if w.role == RoleCard && w.present {
			cands = append(cands, w)
		}
	}
	switch len(cands) {
	case 0:
		return nil, &service.Problem{Code: service.CodeCardAbsent, Title: "no card in any card reader", LegacyCode: -2, Retryable: true}
	case 1:
		return cands[0], nil
	}
	return nil, &service.Problem{Code: service.CodeAmbiguousReader, Title: "several card readers hold a card", Detail: "name the reader (reader_id)"}
}

// Operation returns a snapshot.
func (d *Daemon) Operation(ctx context.Context, id string) (*service.Operation, error) {
	d.mu.Lock()
	o, ok := d.ops[id]
	if ok {
		s := o.snapshot()
		d.mu.Unlock()
		return &s, nil
	}
	d.mu.Unlock()
	var op *service.Operation
	_ = d.opts.Store.DB().View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketOps); b != nil {
			if v := b.Get([]byte(id)); v != nil {
				op = &service.Operation{}
				if json.Unmarshal(v, op) != nil {
					op = nil
				}
			}
		}
		return nil
	})
	if op == nil {
		return nil, &service.Problem{Code: service.CodeNotFound, Title: "no operation with this id"}
	}
	return op, nil
}

// Wait blocks until the operation is final or ctx ends.
func (d *Daemon) Wait(ctx context.Context, id string) (*service.Operation, error) {
	d.mu.Lock()
	o, ok := d.ops[id]
	d.mu.Unlock()
	if !ok {
		return d.Operation(ctx, id)
	}
	select {
	case <-o.done:
		s := o.final // written before done was closed, never after
		return &s, nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := o.snapshot()
	return &s, nil
}

// Cancel cancels a queued operation, or a running one that writes nothing.
func (d *Daemon) Cancel(ctx context.Context, id string) (*service.Operation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.ops[id]
	if !ok {
		return nil, &service.Problem{Code: service.CodeNotFound, Title: "no operation with this id"}
	}
	switch {
	case o.op.State.Final():
	case o.op.State == service.StateQueued:
		o.cancelled = true
		d.finishLocked(o, service.StateCancelled, nil, &service.Problem{Code: service.CodeCancelled, Title: "the operation was cancelled before it started"})
	case o.op.Kind.Writes():
		return nil, service.ErrWriteInFlight
	default:
		o.cancelled = true
		if o.cancel != nil {
			o.cancel()
		}
	}
	s := o.snapshot()
	return &s, nil
}

// Subscribe serves the events.
func (d *Daemon) Subscribe(afterID uint64) ([]service.Event, bool, <-chan service.Event, func()) {
	return d.hub.subscribe(afterID)
}

// Ready reports whether card operations can be taken now.
func (d *Daemon) Ready(ctx context.Context) error {
	d.mu.Lock()
	shutting, up := d.shutting, d.pcscUp
	d.mu.Unlock()
	switch {
	case shutting:
		return shuttingDown()
	case !up:
		return &service.Problem{Code: service.CodePCSCUnavailable, Title: "the smart card service is unavailable", Retryable: true, RetryAfter: 2 * time.Second}
	}
	select {
	case <-d.readyCh:
	default:
		return &service.Problem{Code: service.CodePCSCUnavailable, Title: "the station is still listing its readers", Retryable: true, RetryAfter: time.Second}
	}
	if err := d.opts.Store.Writable(); err != nil {
		return &service.Problem{Code: service.CodeAuditUnavailable, Title: "the store cannot be written", Retryable: true, RetryAfter: 5 * time.Second}
	}
	return nil
}

// Shutdown refuses new operations, cancels the queued ones and waits,
// bounded by ctx, for the one in progress on each reader.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.shutting = true
	for _, o := range d.ops {
		if o.op.State == service.StateQueued {
			o.cancelled = true
			d.finishLocked(o, service.StateCancelled, nil, shuttingDown())
		}
	}
	d.log.Info().Str("event", "shutdown").Msg("refusing new operations; finishing the ones in progress")
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	for d.busyLocked() && ctx.Err() == nil {
		d.cond.Wait()
	}
	busy := d.busyLocked()
	d.mu.Unlock()
	// The end entries committed after their answers are in before the
	// store closes.
	d.opts.Audit.Flush()
	if busy {
		d.baseCancel()
		return fmt.Errorf("shutdown: an operation was still running when the grace period ended: %w", ctx.Err())
	}
	return nil
}

func (d *Daemon) busyLocked() bool {
	for _, w := range d.readers {
		if w.busy {
			return true
		}
	}
	return false
}

// pruneLocked keeps the newest keepOps operations in memory.
func (d *Daemon) pruneLocked() {
	for len(d.opOrder) > keepOps {
		id := d.opOrder[0]
		if o, ok := d.ops[id]; ok && !o.op.State.Final() {
			break
		}
		delete(d.ops, id)
		d.opOrder = d.opOrder[1:]
	}
}

// newOpID is a random operation id.
func newOpID() string { return "op-" + journal.NewOpID() }

// opState is one operation and what runs it.
type opState struct {
	op       service.Operation
	req      service.Request
	w        *worker
	auditSeq uint64
	// begun is closed once Submit has committed the audit begin entry
	// (auditSeq) or failed to (beginErr), or refused the operation after
	// it (refusal). Nothing touches the card before.
	begun     chan struct{}
	beginErr  error
	refusal   *service.Problem
	done      chan struct{}
	final     service.Operation // the snapshot once done is closed
	cancel    context.CancelFunc
	cancelled bool
	apdus     atomic.Uint64
	audited   bool
	cardID    string
	ssnMasked string
	// job, when set, makes this queue entry a job (diagnostics), not an
	// operation: no audit record, no operation resource.
	job *job
}

// awaitBegin waits until Submit has settled the audit begin entry (not
// under d.mu: Submit takes it to settle). Jobs have none.
func (o *opState) awaitBegin() {
	if o.begun != nil {
		<-o.begun
	}
}

// errNotStarted: the operation may not touch the card (no audit record,
// or refused after it).
var errNotStarted = errors.New("the operation was not started")

// begun waits for the operation's audit begin entry: nil when it is
// durable and the operation stands, so the card may be touched.
func (d *Daemon) begun(ctx context.Context, o *opState) error {
	select {
	case <-o.begun:
	case <-ctx.Done():
		return ctx.Err()
	}
	// beginErr and refusal are written before begun is closed.
	if o.beginErr != nil || o.refusal != nil {
		return errNotStarted
	}
	return nil
}

// snapshot copies the operation (callers hold d.mu).
func (o *opState) snapshot() service.Operation {
	s := o.op
	s.Steps = append([]service.Step(nil), o.op.Steps...)
	return s
}

// finishLocked ends an operation: state, result or problem, audit end
// entry, event, stored snapshot.
func (d *Daemon) finishLocked(o *opState, st service.State, result any, p *service.Problem) {
	if o.op.State.Final() {
		return
	}
	if o.beginErr != nil {
		// Submit refused it (no audit record): nothing was touched and
		// nobody waits for it.
		o.op.State = service.StateFailed
		close(o.done)
		d.cond.Broadcast()
		return
	}
	if o.refusal != nil {
		st, result, p = service.StateCancelled, nil, o.refusal
	}
	o.op.State, o.op.Updated = st, time.Now().UTC()
	o.op.WriteInFlight = false
	if result != nil {
		if raw, err := json.Marshal(result); err == nil {
			o.op.Result = raw
		}
	}
	if st == service.StateDone {
		o.op.Progress = 1
		for i := range o.op.Steps {
			o.op.Steps[i].State = "done"
		}
	}
	o.op.Problem = p
	outcome := audit.OutcomeDone
	switch st {
	case service.StateFailed:
		outcome = audit.OutcomeFailed
	case service.StateInterrupted:
		outcome = audit.OutcomeInterrupted
	case service.StateCancelled:
		outcome = audit.OutcomeCancelled
	}
	code, sw := "", ""
	if p != nil {
		code, sw = string(p.Code), p.SW
	}
	// The touch ends with ONE commit: the audit end entry and the stored
	// operation (below). The stored snapshot never holds card data: a
	// read's result (name, ID number) and raw APDU answers stay in memory
	// only.
	stored := o.op
	switch stored.Kind {
	case service.KindRead, service.KindReadFull, service.KindAPDU, service.KindConform:
		stored.Result = nil
	}
	storeOp := func(tx *bolt.Tx) error {
		raw, err := json.Marshal(stored)
		if err != nil {
			return err
		}
		if b := tx.Bucket(bucketOps); b != nil {
			return b.Put([]byte(stored.ID), raw)
		}
		return nil
	}
	// An operation that changes the card is committed before its answer
	// is released (its Idempotency-Key's record is written after it, and
	// a replay after a crash is answered from this operation). Any other
	// is committed after the answer: only the audit begin entry is on
	// its answer's path, and a crash before this commit leaves that begin
	// entry alone, shown as outcome "unknown", with the chain intact.
	d.completeAuditLocked(o, outcome, sw, code, storeOp, !o.op.Kind.Writes())
	evType := service.EventOperationDone
	data := map[string]any{"operation_id": o.op.ID, "kind": o.op.Kind, "reader_id": o.op.ReaderID, "state": st}
	if p != nil {
		evType = service.EventOperationFailed
		data["code"] = p.Code
	}
	d.hub.publish(evType, data)
	// The answer may go now (Wait reads final without d.mu): its audit
	// end and stored operation are committed when it changed the card,
	// queued otherwise.
	o.final = o.snapshot()
	close(o.done)
	d.metrics.observe(&o.op)
	lg := d.log.Info()
	if p != nil {
		lg = d.log.Warn().Str("code", string(p.Code)).Str("sw", p.SW)
	}
	lg.Str("event", string(evType)).Str("op", o.op.ID).Str("kind", string(o.op.Kind)).Str("reader_id", o.op.ReaderID).
		Str("state", string(st)).Uint64("apdus", o.apdus.Load()).Str("request_id", o.req.Caller.RequestID).Msg("operation ended")
	d.cond.Broadcast()
}

// completeAuditLocked writes the end entry of the operation's audit record
// (once), in one transaction with also (the stored operation; nil for
// none); later commits it after the caller goes on (audit.CompleteWith).
// cardID and the masked SSN come from the operation's work.
func (d *Daemon) completeAuditLocked(o *opState, outcome audit.Outcome, sw, code string, also func(*bolt.Tx) error, later bool) {
	if o.audited || o.auditSeq == 0 {
		if also != nil {
			_ = d.opts.Store.DB().Update(also)
		}
		return
	}
	o.audited = true
	if err := d.opts.Audit.CompleteWith(o.auditSeq, audit.End{Outcome: outcome, CardID: o.cardID, SSNMasked: o.ssnMasked, SW: sw, Code: code}, also, later); err != nil {
		d.log.Error().Str("event", "audit.unavailable").Str("op", o.op.ID).Msg("audit end entry or stored operation not written")
	}
}
