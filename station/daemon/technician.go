package daemon

// technician.go is what the daemon does for a technician beyond card
// operations: the diagnosis (station/diag) run reader by reader on the
// readers' own workers, the conformance kit's read-side checks
// (station/conform) as an operation, and PIN entry on a reader's PIN pad.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/pcsc"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/conform"
	"ssstation/station/diag"
	"ssstation/station/journal"
	"ssstation/station/service"
)

// opExtras travel with an operation's context to the work that needs
// them beyond cardapp's progress: the conformance kit's wire trace.
type opExtras struct {
	progress cardapp.Progress
	wire     *conform.Wire
}

type extrasKey struct{}

func extrasOf(ctx context.Context) *opExtras {
	if e, ok := ctx.Value(extrasKey{}).(*opExtras); ok {
		return e
	}
	return &opExtras{}
}

// padState is what is known of a reader's PIN pad when a request comes.
type padState struct {
	known bool // the reader was asked (at its start or first connection)
	caps  pcsc.PINPadCaps
}

// pinpadPrecheck refuses pin_entry "pinpad" where it cannot work, before
// anything is queued. A reader not asked yet is asked at the connection
// (the card's connection refuses then, with the same code).
func pinpadPrecheck(k service.Kind, pad padState) error {
	var has bool
	switch k {
	case service.KindPINVerify:
		has = pad.caps.Verify
	case service.KindPINChange:
		has = pad.caps.Modify
	default:
		return &service.Problem{Code: service.CodePINPadMissing, Title: "PIN pad entry is offered for PIN verify and PIN change only",
			Detail: "this operation takes its PINs in the request (pin_entry \"host\")"}
	}
	if pad.known && !has {
		return &service.Problem{Code: service.CodePINPadMissing, Title: "PIN pad entry is not available on this reader",
			Detail: "this reader has no PIN pad for this operation: send the PIN in the request (pin_entry \"host\")"}
	}
	return nil
}

// padOf is the PIN pad of the reader holding card: the reader itself
// (PC/SC part 10 through SCardControl). No virtual PIN pad exists, so the
// tests put an emulated one in front of the virtual card (padFor).
func (d *Daemon) padOf(card *pcsc.Card) cardapp.PINPad {
	if d.padFor != nil {
		return d.padFor(card)
	}
	return card
}

// padError maps what a PIN pad operation refused for reasons of the pad
// rather than of the card: a profile whose PIN length varies cannot have
// its PIN changed on a pad.
func padError(err error) error {
	if errors.Is(err, cardapp.ErrNotSupported) && !errors.Is(err, cardapp.ErrNoPINPad) {
		return &service.Problem{Code: service.CodePINPadMissing, Title: "this card's PIN cannot be changed on a PIN pad",
			Detail: "its profile takes PINs of variable length: change it with the PIN in the request (pin_entry \"host\")"}
	}
	return err
}

// conformWork runs the conformance kit's read-side checks on the card,
// inside the operation's transaction. The destructive (write-side) checks
// are never offered over HTTP: they stay with `sscard conform --destructive`.
func (d *Daemon) conformWork(ctx context.Context, card *pcsc.Card, req service.Request, kp keys.Provider) (*conform.Report, error) {
	ex := extrasOf(ctx)
	prof, ok := d.opts.Profiles.Get(req.Profile)
	if req.Profile == "" {
		app, err := cardapp.Identify(ctx, card, d.opts.Profiles, cardapp.Options{})
		if err != nil {
			return nil, err
		}
		prof, ok = app.Profile(), true
	}
	if !ok {
		return nil, &service.Problem{Code: service.CodeInvalidData, Title: "no firmware profile with this name", Detail: "GET /v1/diagnostics lists the profile each card identifies as"}
	}
	o := conform.Options{Card: card, Profile: prof, Keys: kp, Wire: ex.wire}
	if ex.progress != nil {
		o.Progress = func(done, total int, name string) { ex.progress(done+1, total, name) }
	}
	rep, err := conform.Run(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	return rep, nil
}

// DiagnosticsInfo is what the diagnosis reports of the station beyond
// its readers (set by stationd from its configuration).
type DiagnosticsInfo struct {
	Config     *config.Config
	KeysSource string // config.Provider*: "psam", "software", "test", "none"
}

// Diagnostics runs the technician's diagnosis: the report of `sscard diag
// --json`. Each reader's part is a job on its worker, queued behind the
// operations already waiting there; the key provider and the store are
// checked through the daemon's own handles (its store is locked to
// others while it runs).
func (d *Daemon) Diagnostics(ctx context.Context, o service.DiagnosticsOptions) (json.RawMessage, error) {
	rep, err := d.diagnose(ctx, o)
	if err != nil {
		return nil, err
	}
	return json.Marshal(rep)
}

func (d *Daemon) diagnose(ctx context.Context, o service.DiagnosticsOptions) (*diag.Report, error) {
	d.mu.Lock()
	if d.shutting {
		d.mu.Unlock()
		return nil, shuttingDown()
	}
	up := d.pcscUp
	ws := make([]*worker, 0, len(d.readers))
	for _, w := range d.readers {
		ws = append(ws, w)
	}
	d.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })

	rep := &diag.Report{Time: time.Now().UTC(), Problems: []string{}, Readers: []diag.ReaderReport{}}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	rep.Service = diag.ServiceReport{Reachable: up, Readers: len(ws)}
	switch {
	case !up:
		rep.Service.Error = "not reachable (is pcscd running?); the station reconnects by itself when it returns"
		problem("PC/SC service: %s", rep.Service.Error)
	case len(ws) == 0:
		problem("PC/SC service: no reader is connected")
	}

	// The station's own parts: keys (a software provider needs no reader),
	// configuration. diag.Run without a PC/SC context checks only those;
	// its service verdict is the daemon's, above.
	info := d.opts.Diagnostics
	base, err := diag.Run(ctx, diag.Options{Profiles: d.opts.Profiles, Keys: d.opts.Keys, KeysSource: info.KeysSource, Config: info.Config,
		ServiceError: errors.New("asked of the daemon")})
	if err != nil {
		return nil, err
	}
	rep.Keys, rep.Config = base.Keys, base.Config
	keyProblems := prefixed(base.Problems, "keys:")

	type part struct {
		w        *worker
		j        *job
		rr       *diag.ReaderReport
		keys     *diag.KeysReport
		problems []string
		keyProbs []string
		err      error
	}
	parts := make([]*part, 0, len(ws))
	psamSeen := false
	for _, w := range ws {
		pt := &part{w: w}
		parts = append(parts, pt)
		if w.role == RoleIgnore {
			pt.rr = &diag.ReaderReport{Name: w.name, Role: RoleIgnore}
			continue
		}
		isPSAM := w.role == RolePSAM
		psamSeen = psamSeen || isPSAM
		pt.j = &job{ctx: ctx, done: make(chan struct{}), run: func(ctx context.Context, pc *pcsc.Context, err error) {
			if err != nil {
				pt.err = err
				return
			}
			do := diag.Options{PCSC: pc, Readers: []string{w.name}, Profiles: d.opts.Profiles, Latency: o.Latency}
			var closeKeys func()
			if isPSAM && d.opts.Keys == nil && d.opts.PSAM != nil {
				do.PSAMReader, do.KeysSource = w.name, config.ProviderPSAM
				card, cerr := pc.Connect(ctx, w.name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
				if cerr != nil {
					do.KeysError = fmt.Errorf("the PSAM cannot be reached: %w", cerr)
				} else {
					prov := d.opts.PSAM(card)
					do.Keys = prov
					closeKeys = func() { prov.Close(); card.Close() }
				}
			} else if isPSAM {
				do.PSAMReader = w.name
			}
			r, rerr := diag.Run(ctx, do)
			if closeKeys != nil {
				closeKeys()
			}
			if rerr != nil {
				pt.err = rerr
				return
			}
			for i := range r.Readers {
				if r.Readers[i].Name == w.name {
					rr := r.Readers[i]
					pt.rr = &rr
				}
			}
			pt.problems = prefixed(r.Problems, fmt.Sprintf("reader %q:", w.name))
			if do.KeysSource == config.ProviderPSAM {
				k := r.Keys
				pt.keys = &k
				pt.keyProbs = prefixed(r.Problems, "keys:")
			}
		}}
		if err := d.enqueueJob(w, pt.j); err != nil {
			pt.j = nil
			p, _ := service.AsProblem(err)
			msg := "not diagnosed"
			if p != nil {
				msg = "not diagnosed: " + p.Title
			}
			pt.rr = &diag.ReaderReport{Name: w.name, Role: w.role, Error: msg}
			pt.problems = []string{fmt.Sprintf("reader %q: %s", w.name, msg)}
		}
	}
	for _, pt := range parts {
		if pt.j == nil {
			continue
		}
		select {
		case <-pt.j.done:
		case <-ctx.Done():
			return nil, &service.Problem{Code: service.CodeReaderBusy, Title: "the diagnosis did not finish in time", ReaderID: pt.w.id,
				Detail: "this reader was busy with other operations or slow to answer: try again when it is idle", Retryable: true, RetryAfter: 5 * time.Second}
		}
	}
	for _, pt := range parts {
		switch {
		case pt.err != nil:
			msg := "not diagnosed: " + journal.RedactIDNumbers(pt.err.Error())
			pt.rr = &diag.ReaderReport{Name: pt.w.name, Role: pt.w.role, Error: msg}
			pt.problems = []string{fmt.Sprintf("reader %q: %s", pt.w.name, msg)}
		case pt.rr == nil:
			pt.rr = &diag.ReaderReport{Name: pt.w.name, Role: pt.w.role, Error: "the reader went away during the diagnosis"}
			pt.problems = []string{fmt.Sprintf("reader %q: went away during the diagnosis", pt.w.name)}
		}
		pt.rr.Role = pt.w.role
		rep.Readers = append(rep.Readers, *pt.rr)
		rep.Problems = append(rep.Problems, pt.problems...)
		if pt.keys != nil {
			rep.Keys, keyProblems = *pt.keys, pt.keyProbs
		}
	}
	if d.opts.Keys == nil && d.opts.PSAM != nil && !psamSeen {
		rep.Keys = diag.KeysReport{Provider: config.ProviderPSAM, PSAMReader: d.opts.PSAMReader, Note: "the PSAM reader is not connected"}
		absent := false
		rep.Keys.PSAMPresent = &absent
		keyProblems = []string{"keys: the PSAM reader is not connected"}
	}
	rep.Problems = append(rep.Problems, keyProblems...)

	rep.Journal, rep.Store = d.storeHealth()
	if rep.Store.State == "damaged" || (rep.Store.AuditOK != nil && !*rep.Store.AuditOK) {
		problem("store %s: %s", rep.Store.Path, rep.Store.Detail)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// prefixed keeps the problems that begin with prefix.
func prefixed(problems []string, prefix string) []string {
	var out []string
	for _, p := range problems {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// storeHealth checks the daemon's store through its own handles: the
// audit chain and the journal kept in it.
func (d *Daemon) storeHealth() (diag.FileHealth, diag.FileHealth) {
	path := d.opts.Store.Path()
	st := diag.FileHealth{Path: path, State: "ok"}
	n, verr := audit.Verify(d.opts.Store.DB())
	ok := verr == nil
	st.AuditOK, st.Entries = &ok, n
	if verr != nil {
		st.Detail = verr.Error()
	}
	jh := diag.FileHealth{Path: path, State: "ok", Detail: "stationd's journal, kept in its store"}
	entries, err := d.opts.Journal.List(0)
	if err != nil {
		jh.State, jh.Detail = "damaged", err.Error()
		return jh, st
	}
	jh.Entries = len(entries)
	for _, e := range entries {
		switch {
		case e.Status == journal.StatusDamaged:
			jh.Damaged++
		case e.Status.Unfinished():
			jh.Unfinished++
		}
	}
	st.Unfinished, st.Damaged = jh.Unfinished, jh.Damaged
	if jh.Damaged > 0 {
		jh.State, jh.Detail = "damaged", fmt.Sprintf("%d journal entries cannot be read", jh.Damaged)
		if ok {
			st.State, st.Detail = "damaged", jh.Detail
		}
	}
	return jh, st
}
