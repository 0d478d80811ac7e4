package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"ssstation/cardapp"
	"ssstation/pcsc"
	"ssstation/station/issuance"
	"ssstation/station/journal"
	"ssstation/station/secret"
)

func init() {
	register("personalize-batch", "personalize blank cards from a JSON-lines holder file (--holders FILE.jsonl), one card per line: asks for each card, resumes where it stopped (--lock: lock each)", cmdPersonalizeBatch)
}

// maxBatchLines bounds a holder file: a day's batch at a service hall is
// hundreds of cards, not millions.
const maxBatchLines = 100000

// batchPoll is how often the reader is looked at while waiting for a card
// to be removed or inserted.
const batchPoll = 100 * time.Millisecond

// Domains of the station secret's MACs for the batch's progress file: it
// holds no holder data, only keyed digests of the lines (so that a changed
// file is noticed) and of the file's path (its name).
const (
	domainBatchFile = "ssstation batch progress file v1"
	domainBatchLine = "ssstation batch line v1"
)

// batchLine is one holder of the file.
type batchLine struct {
	no     int // line number in the file, from 1
	digest string
	req    *cardapp.PersonalizeRequest
}

// lineProgress is what the progress file records of one line: never the
// holder's data.
type lineProgress struct {
	Digest  string    `json:"digest"`
	Status  string    `json:"status"` // "started", "done", "failed"
	OpID    string    `json:"op_id,omitempty"`
	CardID  string    `json:"card_id,omitempty"`
	Locked  bool      `json:"locked,omitempty"`
	Error   string    `json:"error,omitempty"`
	Updated time.Time `json:"updated"`
}

// Line statuses in the progress file.
const (
	lineStarted = "started"
	lineDone    = "done"
	lineFailed  = "failed"
)

// batchProgress is the progress file: which lines are done, and which
// card and journal operation an unfinished line is on.
type batchProgress struct {
	Version int                      `json:"version"`
	Holders string                   `json:"holders"`
	Lines   map[string]*lineProgress `json:"lines"`
	path    string
}

func loadProgress(path, holders string) (*batchProgress, error) {
	p := &batchProgress{Version: 1, Holders: holders, Lines: map[string]*lineProgress{}, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("progress file: %w", err)
	}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("progress file %s is damaged (%v): move it away to start the batch over (the journal still refuses to write a card twice)", path, err)
	}
	if p.Lines == nil {
		p.Lines = map[string]*lineProgress{}
	}
	return p, nil
}

// save writes the progress file atomically (a temporary file renamed
// into place), mode 0600.
func (p *batchProgress) save() error {
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".batch-*")
	if err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("progress file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("progress file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.path); err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	return nil
}

func (p *batchProgress) set(no int, lp *lineProgress) error {
	lp.Updated = time.Now().UTC()
	p.Lines[strconv.Itoa(no)] = lp
	return p.save()
}

// batchResult is one line's result (one JSON line with --json).
type batchResult struct {
	Line     int    `json:"line"`
	Status   string `json:"status"` // "done", "failed", "interrupted"
	CardID   string `json:"card_id,omitempty"`
	OpID     string `json:"op_id,omitempty"`
	Resumed  bool   `json:"resumed,omitempty"`
	Written  int    `json:"written"`
	Skipped  int    `json:"skipped"`
	Verified int    `json:"verified"`
	Locked   bool   `json:"locked"`
	Error    string `json:"error,omitempty"`
}

// readHolderLines reads a JSON-lines holder file strictly: every line not
// blank is one holder document as `sscard personalize --holder` takes it
// (cardapp.DecodeRequest). A bad line is refused before any card is
// touched, by its number, never quoting a value.
func readHolderLines(path string, key *secret.Key) ([]batchLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []batchLine
	no := 0
	for sc.Scan() {
		no++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(out) == maxBatchLines {
			return nil, usagef("%s: more than %d holders: split the file", path, maxBatchLines)
		}
		req, err := cardapp.DecodeRequest(line)
		if err != nil {
			return nil, usagef("%s line %d: %v", path, no, err)
		}
		out = append(out, batchLine{no: no, req: req, digest: key.MAC(domainBatchLine, line)})
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("%s line %d: %v", path, no+1, err)
	}
	if len(out) == 0 {
		return nil, usagef("%s holds no holder", path)
	}
	return out, nil
}

// cmdPersonalizeBatch is `sscard personalize-batch --holders FILE.jsonl
// --reader R [--lock]`: one blank card per line of the file, in order.
// For each line it asks for a card on standard error (the previous card
// removed, a new one inserted), refuses a card that is not blank and asks
// again, and personalizes through the journal (station/issuance). A
// progress file (default DATA_DIR/batch/…json, keyed by the holder file's
// path) records which lines are done and which card and operation an
// unfinished line is on: the same command run again skips the lines done
// and resumes an interrupted line on the same card.
func cmdPersonalizeBatch(ctx context.Context, env *cli, args []string) error {
	f, fs := addIssueFlags("personalize-batch")
	holders := fs.String("holders", "", "JSON-lines file: one holder per line, as `sscard personalize --holder` takes it (required)")
	lock := fs.Bool("lock", false, "lock (finalize) each card after its read-back passed: issue on the spot")
	progPath := fs.String("progress", "", "progress file (default DATA_DIR/batch/ and a name derived from the holder file's path)")
	if err := parseFlags(fs.FlagSet, args); err != nil {
		return err
	}
	if *holders == "" {
		return usagef("--holders FILE.jsonl is required")
	}
	if *f.op != "" {
		return usagef("--op does not apply to a batch: each line has its own operation, kept in the progress file")
	}
	abs, err := filepath.Abs(*holders)
	if err != nil {
		return usagef("%v", err)
	}
	ce, err := loadCardEnv(f.cardFlags)
	if err != nil {
		return err
	}
	j, key, err := openJournal(ce, *f.journal)
	if err != nil {
		return err
	}
	defer j.Close()
	lines, err := readHolderLines(abs, key)
	if err != nil {
		return err
	}
	pp := *progPath
	if pp == "" {
		jp, _ := journalPath(ce, *f.journal)
		pp = filepath.Join(filepath.Dir(jp), "batch", "batch-"+key.MAC(domainBatchFile, []byte(abs))[:16]+".json")
	}
	prog, err := loadProgress(pp, abs)
	if err != nil {
		return err
	}
	var pending []batchLine
	for _, ln := range lines {
		lp := prog.Lines[strconv.Itoa(ln.no)]
		if lp != nil && lp.Digest != ln.digest && lp.Status != lineFailed {
			return usagef("%s line %d changed since the batch %s it (progress file %s): restore the line, or give another --progress to run the file as a new batch",
				*holders, ln.no, map[string]string{lineDone: "finished", lineStarted: "started"}[lp.Status], pp)
		}
		if lp == nil || lp.Status != lineDone {
			pending = append(pending, ln)
		}
	}

	b := &batch{env: env, asJSON: *f.asJSON, lock: *lock, prog: prog, total: len(lines), done: len(lines) - len(pending),
		r: &issuance.Runner{Journal: j, Set: ce.set, Opts: ce.options(), Secret: key}}
	if b.done > 0 {
		b.say("%d of %d lines done in an earlier run (progress file %s): going on with line %d", b.done, b.total, pp, firstNo(pending))
	}
	if len(pending) == 0 {
		if !b.asJSON {
			fmt.Fprintf(env.stdout, "Every line of %s is done (%d cards).\n", *holders, len(lines))
		}
		return nil
	}
	pc, err := pcsc.Establish()
	if err != nil {
		return fmt.Errorf("cannot reach the smart card service (is pcscd running?): %w", err)
	}
	defer pc.Release()
	b.pc = pc
	if b.reader, err = resolveReader(pc, *f.reader); err != nil {
		return err
	}
	release, err := ce.attachKeys(ctx, pc, b.reader)
	if err != nil {
		return err
	}
	defer release()
	b.r.Opts = ce.options()
	b.bar = newProgress(env, b.asJSON, "batch")
	b.bar.step(filepath.Base(*holders), b.done, b.total)
	defer b.bar.finish()
	for _, ln := range pending {
		if err := b.run(ctx, ln); err != nil {
			return err
		}
	}
	if !b.asJSON {
		b.bar.finish()
		fmt.Fprintf(env.stdout, "Batch complete: all %d lines of %s done.\n", b.total, *holders)
	}
	return nil
}

func firstNo(l []batchLine) int {
	if len(l) == 0 {
		return 0
	}
	return l[0].no
}

// batch is one run over the pending lines.
type batch struct {
	env    *cli
	asJSON bool
	lock   bool
	prog   *batchProgress
	r      *issuance.Runner
	pc     *pcsc.Context
	reader string
	bar    *progress
	total  int
	done   int
	// fresh: the card in the reader was looked at (done, refused): the
	// next line needs it removed and another inserted.
	fresh bool
}

// say prints a prompt or a notice for the person at the reader.
func (b *batch) say(format string, args ...any) {
	if b.bar != nil && b.bar.bar != nil {
		_ = b.bar.bar.Clear()
		fmt.Fprintln(b.env.stderr)
	}
	fmt.Fprintf(b.env.stderr, "sscard: "+format+"\n", args...)
}

// waitCard waits until the reader reports a card present (or absent).
func (b *batch) waitCard(ctx context.Context, present bool) error {
	for {
		st, err := b.pc.Status([]string{b.reader})
		if err != nil {
			return err
		}
		if len(st) == 1 && st[0].CardPresent == present {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(batchPoll):
		}
	}
}

// errRefused: the card in the reader is not one this line may use (not
// blank, or not the card its interrupted personalization is on).
type errRefused struct{ why string }

func (e errRefused) Error() string { return e.why }

// run takes one line to done: it asks for cards until one is accepted
// and personalized. It returns an error only to stop the batch: a
// cancelled context (Ctrl-C), a refusal known to have changed nothing
// (the line is marked failed), a journal or progress file that cannot be
// written.
func (b *batch) run(ctx context.Context, ln batchLine) error {
	key := strconv.Itoa(ln.no)
	for {
		lp := b.prog.Lines[key]
		if lp != nil && lp.Status == lineStarted {
			// Where did the interrupted attempt leave the card? The journal
			// knows: done (the progress file was not updated), abandoned by
			// a technician (the card is gone: start over on another), or
			// still unfinished (resume on the same card).
			e, err := b.r.Journal.Get(lp.OpID)
			switch {
			case err == nil && e.Status == journal.StatusDone:
				return b.finish(ln, &batchResult{Line: ln.no, Status: lineDone, CardID: lp.CardID, OpID: lp.OpID, Resumed: true, Locked: b.lock}, nil)
			case err == nil && (e.Status == journal.StatusAbandoned || e.Status == journal.StatusFailed):
				b.say("line %d: its operation on card %s %s: the line starts over on a new blank card", ln.no, lp.CardID,
					map[journal.Status]string{journal.StatusAbandoned: "was abandoned", journal.StatusFailed: "failed"}[e.Status])
				lp = nil
				delete(b.prog.Lines, key)
			}
		}
		want := "a blank card"
		if lp != nil && lp.Status == lineStarted {
			want = fmt.Sprintf("card %s again (line %d's personalization on it was interrupted)", lp.CardID, ln.no)
		}
		if b.fresh {
			if st, err := b.pc.Status([]string{b.reader}); err == nil && len(st) == 1 && st[0].CardPresent {
				b.say("line %d: remove the card from %s", ln.no, b.reader)
			}
			if err := b.waitCard(ctx, false); err != nil {
				return b.stopped(ln, err)
			}
		}
		if st, err := b.pc.Status([]string{b.reader}); err != nil || len(st) != 1 || !st[0].CardPresent {
			b.say("line %d of %d: insert %s into %s", ln.no, b.total, want, b.reader)
		}
		if err := b.waitCard(ctx, true); err != nil {
			return b.stopped(ln, err)
		}
		b.fresh = true
		res, err := b.personalize(ctx, ln, lp)
		var refused errRefused
		switch {
		case err == nil:
			return b.finish(ln, res, nil)
		case errors.As(err, &refused):
			b.say("line %d: %s: remove it", ln.no, refused.why)
		case ctx.Err() != nil:
			return b.stopped(ln, ctx.Err())
		case errors.Is(err, issuance.ErrInterrupted) || transientCardError(err):
			cur := b.prog.Lines[key]
			if cur != nil && cur.Status == lineStarted {
				// A card still in the reader (the journal could not be
				// written, the card was reset) is taken out and put back
				// by a hand: no loop of attempts while nobody looks.
				st, serr := b.pc.Status([]string{b.reader})
				b.fresh = serr != nil || len(st) != 1 || st[0].CardPresent
				b.say("line %d: interrupted (%v): put card %s back to resume", ln.no, err, cur.CardID)
			} else {
				b.say("line %d: the card could not be used, nothing was written (%v): take it out and insert it again", ln.no, err)
			}
		default:
			return b.finish(ln, res, err)
		}
	}
}

// transientCardError: the card or the reader went away before the
// operation began.
// A PC/SC error of no particular kind (a transaction refused because the
// card left as it began) counts too: before a line has started, nothing
// was written, and the person is asked for the card again.
func transientCardError(err error) bool {
	var pe *pcsc.Error
	if !errors.As(err, &pe) {
		return errors.Is(err, pcsc.ErrNoCard) || errors.Is(err, pcsc.ErrCardRemoved)
	}
	switch pe.Kind {
	case pcsc.KindCardRemoved, pcsc.KindCardReset, pcsc.KindNoCard, pcsc.KindUnresponsive, pcsc.KindOther:
		return true
	}
	return false
}

// personalize connects to the card in the reader and, in one transaction,
// checks that this line may use it and personalizes it.
func (b *batch) personalize(ctx context.Context, ln batchLine, lp *lineProgress) (*batchResult, error) {
	card, err := b.pc.Connect(ctx, b.reader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		return nil, err
	}
	defer card.Close()
	res := &batchResult{Line: ln.no}
	err = card.Transaction(ctx, func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, card, b.r.Set, b.r.Opts)
		if err != nil {
			if errors.Is(err, cardapp.ErrUnknownCard) {
				return errRefused{fmt.Sprintf("the card in %s is not a social security card this station knows (%v)", b.reader, err)}
			}
			return err
		}
		raw, err := app.CardID(ctx)
		if err != nil {
			return err
		}
		cardID := fmt.Sprintf("%X", raw)
		opID := ""
		if lp != nil && lp.Status == lineStarted {
			// An interrupted line resumes on its own card only: it may be
			// half-written, so the blank check does not apply.
			if cardID != lp.CardID {
				return errRefused{fmt.Sprintf("card %s is not card %s, on which line %d was started (if that card is lost: sscard journal abandon %s, and the line starts over on a new card)", cardID, lp.CardID, ln.no, lp.OpID)}
			}
			opID = lp.OpID
		} else {
			info, err := app.ReadBasicInfo(ctx)
			if err != nil {
				var ue *cardapp.UnknownCardError
				if errors.Is(err, cardapp.ErrCardNotGenuine) || errors.As(err, &ue) {
					return errRefused{fmt.Sprintf("card %s: %v", cardID, err)}
				}
				return err
			}
			if !info.Blank {
				return errRefused{fmt.Sprintf("card %s is not blank (%s)", cardID, info.State)}
			}
			// Data that does not fit this card's profile fails the line
			// before it is started: the line can be fixed and run again.
			if err := cardapp.ValidateRequest(app.Profile(), ln.req); err != nil {
				res.CardID = cardID
				return err
			}
			opID = journal.NewOpID()
			// Recorded before the first write: a run stopped from here on
			// resumes this line on this card only.
			if err := b.prog.set(ln.no, &lineProgress{Digest: ln.digest, Status: lineStarted, OpID: opID, CardID: cardID}); err != nil {
				return err
			}
		}
		res.CardID, res.OpID = cardID, opID
		pr, out, err := b.r.Personalize(ctx, card, b.reader, opID, ln.req, b.lock)
		if out != nil {
			res.Resumed = out.Resumed
		}
		if pr != nil {
			res.Written, res.Skipped, res.Verified, res.Locked = pr.Written, pr.Skipped, pr.Verified, pr.Locked
		}
		if errors.Is(err, issuance.ErrOtherCard) {
			return errRefused{err.Error()}
		}
		return err
	})
	if err == nil {
		res.Status = lineDone
	}
	return res, err
}

// finish records a line's end and prints its result. err is a failure
// known to have changed nothing more: the line is marked failed and the
// batch stops for a person to look.
func (b *batch) finish(ln batchLine, res *batchResult, err error) error {
	if res == nil {
		res = &batchResult{Line: ln.no}
	}
	lp := &lineProgress{Digest: ln.digest, Status: lineDone, OpID: res.OpID, CardID: res.CardID, Locked: res.Locked}
	if err != nil {
		res.Status, res.Error = lineFailed, err.Error()
		lp.Status, lp.Error = lineFailed, err.Error()
		if prev := b.prog.Lines[strconv.Itoa(ln.no)]; prev != nil && prev.Status == lineStarted {
			// The card may be half-written: the line stays on it, and the
			// next run asks the journal whether it resumes or starts over.
			lp.Status, lp.OpID, lp.CardID = lineStarted, prev.OpID, prev.CardID
		}
	} else {
		res.Status = lineDone
		b.done++
	}
	if perr := b.prog.set(ln.no, lp); perr != nil {
		return perr
	}
	b.bar.step(filepath.Base(b.prog.Holders), b.done, b.total)
	if b.asJSON {
		if werr := writeJSONLine(b.env, res); werr != nil {
			return werr
		}
	} else if err == nil {
		if b.bar != nil && b.bar.bar != nil {
			_ = b.bar.bar.Clear()
		}
		resumed := ""
		if res.Resumed {
			resumed = ", resumed"
		}
		fmt.Fprintf(b.env.stdout, "Line %d: card %s personalized (%d records written, %d already written, %d read back equal; locked: %v%s).\n",
			ln.no, res.CardID, res.Written, res.Skipped, res.Verified, res.Locked, resumed)
	}
	if err != nil {
		return fmt.Errorf("line %d failed, the batch stops (run the same command to retry it after fixing the cause): %w", ln.no, err)
	}
	return nil
}

// stopped ends the batch on Ctrl-C or a lost service: what is done is
// recorded; the same command goes on from this line.
func (b *batch) stopped(ln batchLine, err error) error {
	if b.asJSON {
		_ = writeJSONLine(b.env, &batchResult{Line: ln.no, Status: "interrupted", Error: err.Error()})
	}
	return fmt.Errorf("stopped at line %d (%d of %d lines done): run the same command to go on: %w", ln.no, b.done, b.total, err)
}
