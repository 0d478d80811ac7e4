// Package conform is the conformance kit: for a firmware profile and a
// card in a reader, it sends every read-side command the station relies
// on, coded as the profile says, and compares each answer with what the
// profile expects. One verdict per command, with the exact bytes sent and
// got (personal data and cryptograms redacted), and a summary. It is how a
// region checks a new card batch or card OS before it goes live: a card
// that passes is one the station reads the way its profile says.
//
// Nothing here writes to the card or spends a PIN try; the write-side
// checks (destructive.go) run only on a blank card, and only when asked.
package conform

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// Conn is the card connection: *pcsc.Card is one. Run is called inside
// the caller's transaction.
type Conn interface {
	Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error)
	ATR() []byte
	Reader() string
}

// Options are Run's dependencies.
type Options struct {
	Card    Conn
	Profile *profiles.Profile
	// Keys, when configured, adds the checks that need them: EXTERNAL
	// AUTHENTICATE before key-guarded records, INTERNAL AUTHENTICATE.
	// Without keys, a key-guarded record is expected to be refused.
	Keys keys.Provider
	// Wire, when its Trace is the connection's tracer, gives each check the
	// APDUs exactly as they went on the wire (GET RESPONSEs included).
	Wire *Wire
	// Progress is told before each check is sent.
	Progress func(done, total int, name string)
	// Destructive runs the write-side checks with Holder (fictional data):
	// they refuse a card that is not blank, write it, read it back, and
	// never lock it.
	Destructive bool
	Holder      *cardapp.PersonalizeRequest
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Verdicts.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Check is one command and its verdict.
type Check struct {
	N    int    `json:"n"`
	Name string `json:"name"`
	// Command is the APDU as the station composes it (data redacted for
	// PINs and cryptograms); Wire, when available, what crossed the wire.
	Command  string `json:"command"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	SW       string `json:"sw,omitempty"`
	Verdict  string `json:"verdict"`
	Detail   string `json:"detail,omitempty"`
	// Wire lines: "> APDU" and "< answer" as traced (redacted where sensitive).
	Wire []string `json:"wire,omitempty"`
}

// Summary counts the verdicts.
type Summary struct {
	Pass int `json:"pass"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Report is one conformance run.
type Report struct {
	Time        time.Time `json:"time"`
	Profile     string    `json:"profile"`
	Reader      string    `json:"reader"`
	ATR         string    `json:"atr"`
	ATRMatches  bool      `json:"atr_matches_profile"`
	Keys        bool      `json:"keys"`
	Destructive bool      `json:"destructive"`
	Checks      []Check   `json:"checks"`
	Summary     Summary   `json:"summary"`
	// OK: no check failed.
	OK bool `json:"ok"`
	// Failed names the commands that failed, in order.
	Failed []string `json:"failed"`
}

// Wire collects trace events between checks.
type Wire struct {
	mu    sync.Mutex
	lines []string
}

// Trace is a pcsc.Tracer.
func (w *Wire) Trace(ev pcsc.TraceEvent) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, "> "+ev.Command)
	if ev.Err != nil {
		w.lines = append(w.lines, "< error: "+ev.Err.Error())
	} else {
		w.lines = append(w.lines, "< "+ev.Response)
	}
}

func (w *Wire) take() []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.lines
	w.lines = nil
	return out
}

// step is one planned check.
type step struct {
	name string
	run  func(r *runner, ctx context.Context) Check
}

type runner struct {
	o      Options
	p      *profiles.Profile
	alg    keys.Algorithm
	keys   bool
	cardID []byte
	authed map[byte]bool
	// inApp: the last SELECT SSSE passed; selected: files whose SELECT
	// passed. A check that depends on a failed one is skipped, so that the
	// report names the command that failed and not everything after it.
	inApp    bool
	selected map[string]bool
}

// after returns a skip when a check this one depends on failed.
func (r *runner) after(cmd apdu.Command, file string) (Check, bool) {
	switch {
	case !r.inApp:
		return Check{Command: composed(cmd), Verdict: Skip, Detail: "not sent: SELECT SSSE failed"}, true
	case file != "" && r.p.Files[file].SelectsEF() && !r.selected[file]:
		return Check{Command: composed(cmd), Verdict: Skip, Detail: "not sent: SELECT " + file + " failed"}, true
	}
	return Check{}, false
}

// Run runs the checks. Its error is for a profile it cannot use or a lost
// connection; every disagreement of the card is a failed check.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Card == nil || o.Profile == nil {
		return nil, fmt.Errorf("conformance: a card and a profile are required")
	}
	if o.Destructive && o.Holder == nil {
		return nil, fmt.Errorf("conformance: the write-side checks need the fictional holder to write")
	}
	alg, err := keys.ParseAlgorithm(o.Profile.Crypto.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("conformance: profile %s: %w", o.Profile.Name, err)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	r := &runner{o: o, p: o.Profile, alg: alg, keys: keys.Ready(o.Keys) == nil, authed: map[byte]bool{}, selected: map[string]bool{}}
	rep := &Report{
		Time: now().UTC(), Profile: o.Profile.Name, Reader: o.Card.Reader(),
		ATR: fmt.Sprintf("%X", o.Card.ATR()), ATRMatches: o.Profile.MatchATR(o.Card.ATR()) >= 0,
		Keys: r.keys, Destructive: o.Destructive, Checks: []Check{}, Failed: []string{},
	}
	steps := r.plan()
	if o.Destructive {
		steps = append(steps, r.destructivePlan()...)
	}
	o.Wire.take()
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(i, len(steps), s.name)
		}
		c := s.run(r, ctx)
		c.N, c.Name = i+1, s.name
		c.Wire = o.Wire.take()
		rep.Checks = append(rep.Checks, c)
		switch c.Verdict {
		case Pass:
			rep.Summary.Pass++
		case Fail:
			rep.Summary.Fail++
			rep.Failed = append(rep.Failed, s.name)
		default:
			rep.Summary.Skip++
		}
		if c.Detail == errLost {
			break
		}
	}
	if o.Progress != nil {
		o.Progress(len(steps), len(steps), "")
	}
	rep.OK = rep.Summary.Fail == 0
	return rep, nil
}

const errLost = "the connection failed: the checks after this one were not run"

// plan lists the read-side checks in the order the station sends them.
func (r *runner) plan() []step {
	p := r.p
	var steps []step
	if p.Select.MFFirst {
		steps = append(steps, step{"SELECT MF", func(r *runner, ctx context.Context) Check {
			cmd := apdu.Command{INS: 0xA4, Data: []byte{0x3F, 0x00}, Name: "SELECT MF"}
			return r.exchange(ctx, cmd, "9000 (the station goes on after a refusal, card-reference §3)", func(resp apdu.Response) string {
				return swIs(resp, apdu.SWOK)
			})
		}})
	}
	steps = append(steps, step{"SELECT SSSE", (*runner).selectSSSE})
	for _, fname := range fileNames(p) {
		f := p.Files[fname]
		// Authenticate before the file's first key-guarded record, as the
		// station does (EXTERNAL AUTHENTICATE, then SELECT, then READ).
		for _, k := range fileKeys(p, f) {
			if r.keys {
				kk := k
				steps = append(steps, step{fmt.Sprintf("EXTERNAL AUTHENTICATE key %02X", kk), func(r *runner, ctx context.Context) Check { return r.externalAuth(ctx, kk) }})
			}
		}
		if f.SelectsEF() {
			fname := fname
			steps = append(steps, step{"SELECT " + fname, func(r *runner, ctx context.Context) Check { return r.selectEF(ctx, fname) }})
		}
		recs := append([]profiles.Record(nil), f.Records...)
		sort.Slice(recs, func(i, j int) bool { return recs[i].Number < recs[j].Number })
		for _, rec := range recs {
			fname, rec := fname, rec
			steps = append(steps, step{"READ RECORD " + rec.Item, func(r *runner, ctx context.Context) Check { return r.readRecord(ctx, fname, rec) }})
		}
	}
	steps = append(steps, step{"SELECT SSSE (again)", (*runner).selectSSSE})
	steps = append(steps, step{"GET CHALLENGE", func(r *runner, ctx context.Context) Check {
		c, _ := r.challenge(ctx)
		return c
	}})
	if r.keys {
		steps = append(steps, step{"INTERNAL AUTHENTICATE", (*runner).internalAuth})
	}
	steps = append(steps, step{"VERIFY (PIN tries)", (*runner).pinTries})
	return steps
}

func fileNames(p *profiles.Profile) []string {
	out := make([]string, 0, len(p.Files))
	for n := range p.Files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// fileKeys are the key indexes guarding the file's records, sorted.
func fileKeys(p *profiles.Profile, f *profiles.File) []byte {
	set := map[byte]bool{}
	for _, rec := range f.Records {
		if acc, _ := p.ReadAccess(rec.Item); acc.Kind == profiles.AccessKey {
			set[acc.Key] = true
		}
	}
	out := make([]byte, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// exchange sends cmd and judges the answer with judge ("" is a pass).
func (r *runner) exchange(ctx context.Context, cmd apdu.Command, expected string, judge func(apdu.Response) string) Check {
	c := Check{Expected: expected, Command: composed(cmd)}
	resp, err := r.o.Card.Transmit(ctx, cmd)
	if err != nil {
		c.Verdict, c.Got = Fail, "error: "+err.Error()
		if pcsc.KindOf(err) == pcsc.KindCardRemoved || pcsc.KindOf(err) == pcsc.KindServiceGone {
			c.Detail = errLost
		}
		return c
	}
	c.SW = resp.SW.String()
	c.Got = shown(cmd, resp)
	if why := judge(resp); why != "" {
		c.Verdict, c.Detail = Fail, why
	} else {
		c.Verdict = Pass
	}
	return c
}

// composed is the APDU as the station composes it; sensitive data redacted.
func composed(cmd apdu.Command) string {
	raw, err := cmd.Bytes()
	if err != nil {
		return "unencodable: " + err.Error()
	}
	if cmd.Sensitive {
		return pcsc.RedactCommand(raw)
	}
	return fmt.Sprintf("% X", raw)
}

// shown is the answer as the report may show it: the status word, and the
// data unless the command is sensitive (then its length).
func shown(cmd apdu.Command, resp apdu.Response) string {
	if len(resp.Data) == 0 {
		return resp.SW.String()
	}
	if cmd.Sensitive {
		return fmt.Sprintf("[%d bytes redacted] %s", len(resp.Data), resp.SW.String())
	}
	return fmt.Sprintf("% X %s", resp.Data, resp.SW.String())
}

func swIs(resp apdu.Response, want ...apdu.StatusWord) string {
	for _, w := range want {
		if resp.SW == w {
			return ""
		}
	}
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = w.String()
	}
	return fmt.Sprintf("answered %s (%s), expected %s", resp.SW.String(), resp.SW.Meaning(), strings.Join(names, " or "))
}

func (r *runner) selectSSSE(ctx context.Context) Check {
	cmd := apdu.Command{INS: 0xA4, P1: 0x04, Data: r.p.Select.SSSEAID, Ne: 256, Name: "SELECT SSSE"}
	r.authed = map[byte]bool{}
	r.selected = map[string]bool{}
	want := "9000 with the FCI"
	if r.p.Crypto.Algorithm != profiles.Alg3DES {
		want += fmt.Sprintf("; 9F0C algorithm %s", r.p.Crypto.Algorithm)
	} else {
		want += "; 9F0C absent or 01 (3DES)"
	}
	c := r.exchange(ctx, cmd, want, func(resp apdu.Response) string {
		if why := swIs(resp, apdu.SWOK); why != "" {
			if resp.SW == apdu.SWWarningFileInvalidated {
				return why + ": the application is blocked"
			}
			return why
		}
		if got := algorithmOf(resp.Data); got != r.p.Crypto.Algorithm {
			return fmt.Sprintf("the FCI announces %s, the profile says %s", got, r.p.Crypto.Algorithm)
		}
		return ""
	})
	r.inApp = c.SW == apdu.SWOK.String() || c.SW == apdu.SWWarningFileInvalidated.String()
	return c
}

// algorithmOf reads 9F0C 03 86 01 xx in the FCI (card-reference §2);
// absent means 3DES.
func algorithmOf(fci []byte) string {
	for i := 0; i+6 <= len(fci); i++ {
		if fci[i] == 0x9F && fci[i+1] == 0x0C && fci[i+3] == 0x86 && fci[i+4] == 0x01 {
			switch fci[i+5] {
			case 1:
				return profiles.Alg3DES
			case 3:
				return profiles.AlgSM4
			}
			return fmt.Sprintf("unknown (%02X)", fci[i+5])
		}
	}
	return profiles.Alg3DES
}

func (r *runner) selectEF(ctx context.Context, name string) Check {
	f := r.p.Files[name]
	cmd := apdu.Command{INS: 0xA4, P1: r.p.Select.EFP1, P2: r.p.Select.EFP2, Data: f.FID[:], Name: "SELECT " + name}
	if c, skip := r.after(cmd, ""); skip {
		return c
	}
	c := r.exchange(ctx, cmd, "9000", func(resp apdu.Response) string { return swIs(resp, apdu.SWOK) })
	r.selected[name] = c.Verdict == Pass
	return c
}

// readRecord reads one record as the profile codes it. Values are never
// shown (they may be personal): the check is the tag, the length within the
// profile's, the value's coding, and, for the spec version, its text.
func (r *runner) readRecord(ctx context.Context, file string, rec profiles.Record) Check {
	f := r.p.Files[file]
	p1, p2 := f.ReadCommand(rec)
	cmd := apdu.Command{INS: 0xB2, P1: p1, P2: p2, Ne: rec.Length + 2, Sensitive: rec.Item != profiles.ItemSpecVersion, Name: "READ RECORD " + rec.Item}
	if c, skip := r.after(cmd, file); skip {
		return c
	}
	acc, _ := r.p.ReadAccess(rec.Item)
	switch {
	case acc.Kind == profiles.AccessKey && !r.keys:
		return r.exchange(ctx, cmd, fmt.Sprintf("6982: the record needs key %02X and no key provider is configured", acc.Key), func(resp apdu.Response) string {
			return swIs(resp, apdu.SWSecurityStatus)
		})
	case acc.Kind == profiles.AccessKey && !r.authed[acc.Key]:
		return Check{Command: composed(cmd), Expected: "read after EXTERNAL AUTHENTICATE", Verdict: Skip, Detail: fmt.Sprintf("key %02X was not authenticated", acc.Key)}
	case acc.Kind == profiles.AccessPIN:
		return r.exchange(ctx, cmd, "6982: the record needs the PIN, which conformance never sends", func(resp apdu.Response) string {
			return swIs(resp, apdu.SWSecurityStatus)
		})
	case acc.Kind == profiles.AccessNever:
		return r.exchange(ctx, cmd, "a refusal (69xx): the profile says never readable", func(resp apdu.Response) string {
			if resp.SW.SW1() == 0x69 {
				return ""
			}
			return fmt.Sprintf("answered %s, expected a 69xx refusal", resp.SW.String())
		})
	}
	exact := func(c Check) Check {
		// The command itself carries no secret (only the answer may): show it whole.
		if raw, err := cmd.Bytes(); err == nil {
			c.Command = fmt.Sprintf("% X", raw)
		}
		return c
	}
	want := fmt.Sprintf("9000; tag %02X, value of %d bytes at most (%s)", rec.Tag, rec.Length, rec.Type)
	if rec.Optional {
		want += "; or 6A83 (optional record)"
	}
	if rec.Item == profiles.ItemSpecVersion {
		want += fmt.Sprintf("; text %q", r.p.SpecVersion)
	}
	return exact(r.exchange(ctx, cmd, want, func(resp apdu.Response) string {
		if rec.Optional && resp.SW == apdu.SWRecordNotFound {
			return ""
		}
		if why := swIs(resp, apdu.SWOK); why != "" {
			return why
		}
		d := resp.Data
		if len(d) < 2 || d[0] != rec.Tag {
			return fmt.Sprintf("expected tag %02X, got % X", rec.Tag, firstBytes(d, 1))
		}
		n := int(d[1])
		if 2+n > len(d) {
			return fmt.Sprintf("tag %02X announces %d bytes but %d follow", rec.Tag, n, len(d)-2)
		}
		if n > rec.Length {
			return fmt.Sprintf("value of %d bytes, the profile says at most %d", n, rec.Length)
		}
		v := d[2 : 2+n]
		if rec.Item == profiles.ItemCardID {
			if n != 16 {
				return fmt.Sprintf("card identification code of %d bytes, want 16", n)
			}
			r.cardID = append([]byte(nil), v...)
		}
		if _, err := records.Decode(rec.Type, v); err != nil {
			return fmt.Sprintf("value is not %s: %v", rec.Type, err)
		}
		if rec.Item == profiles.ItemSpecVersion {
			s, _ := records.Decode(rec.Type, v)
			if s != r.p.SpecVersion {
				return fmt.Sprintf("spec version %q, the profile is for %q", s, r.p.SpecVersion)
			}
		}
		return ""
	}))
}

func firstBytes(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[:n]
}

// challenge is GET CHALLENGE: 9000 and 8 bytes.
func (r *runner) challenge(ctx context.Context) (Check, []byte) {
	cmd := apdu.Command{INS: 0x84, Ne: 8, Name: "GET CHALLENGE"}
	var got []byte
	c := r.exchange(ctx, cmd, "9000 and 8 random bytes", func(resp apdu.Response) string {
		if why := swIs(resp, apdu.SWOK); why != "" {
			return why
		}
		if len(resp.Data) != 8 {
			return fmt.Sprintf("%d bytes, want 8", len(resp.Data))
		}
		got = resp.Data
		return ""
	})
	return c, got
}

// request is the key holder's request for holder key name on this card.
func (r *runner) request(name string) (keys.Request, error) {
	if r.cardID == nil {
		return keys.Request{}, fmt.Errorf("the card identification code was not read: no key can be diversified")
	}
	var path [][]byte
	for _, l := range r.p.Crypto.Diversification.Levels {
		in, err := profiles.DivInput(l, r.cardID)
		if err != nil {
			return keys.Request{}, err
		}
		path = append(path, in)
	}
	return keys.Request{Key: keys.KeyName(name), Algorithm: r.alg, Path: path}, nil
}

// externalAuth is GET CHALLENGE and EXTERNAL AUTHENTICATE with card key kk,
// reported as one check (the challenge is its input).
func (r *runner) externalAuth(ctx context.Context, kk byte) Check {
	role := ""
	for name, idx := range r.p.Crypto.Keys {
		if byte(idx) == kk {
			role = name
		}
	}
	holder, ok := r.p.HolderKeyFor(role)
	cmdShape := apdu.Command{INS: 0x82, P2: kk, Data: make([]byte, keys.ExternalAuthDataSize), Sensitive: true}
	if c, skip := r.after(cmdShape, ""); skip {
		return c
	}
	if !ok {
		return Check{Command: composed(cmdShape), Verdict: Fail, Detail: fmt.Sprintf("the profile names no holder key for card key %02X", kk)}
	}
	req, err := r.request(holder)
	if err != nil {
		return Check{Command: composed(cmdShape), Verdict: Skip, Detail: err.Error()}
	}
	chk, ch := r.challenge(ctx)
	if chk.Verdict != Pass {
		chk.Detail = "GET CHALLENGE before EXTERNAL AUTHENTICATE: " + chk.Detail
		return chk
	}
	crypt, err := keys.ExternalAuthCryptogram(ctx, r.o.Keys, req, ch)
	if err != nil {
		return Check{Command: composed(cmdShape), Verdict: Fail, Detail: "key holder: " + err.Error()}
	}
	cmd := apdu.Command{INS: 0x82, P2: kk, Data: crypt, Sensitive: true, Name: "EXTERNAL AUTHENTICATE"}
	c := r.exchange(ctx, cmd, fmt.Sprintf("9000: the card accepts the cryptogram of holder key %s", holder), func(resp apdu.Response) string {
		return swIs(resp, apdu.SWOK)
	})
	clear(crypt)
	if c.Verdict == Pass {
		r.authed[kk] = true
	}
	return c
}

// internalAuth is the genuineness check: the card's answer must be the
// key holder's encryption of the same data.
func (r *runner) internalAuth(ctx context.Context) Check {
	ia := r.p.Crypto.InternalAuth
	holder, ok := r.p.HolderKeyFor(ia.Key)
	shape := apdu.Command{INS: 0x88, P2: byte(r.p.Crypto.Keys[ia.Key]), Data: make([]byte, 16), Ne: r.alg.BlockSize(), Sensitive: true}
	if c, skip := r.after(shape, ""); skip {
		return c
	}
	if !ok {
		return Check{Command: composed(shape), Verdict: Fail, Detail: "the profile names no holder key for " + ia.Key}
	}
	req, err := r.request(holder)
	if err != nil {
		return Check{Command: composed(shape), Verdict: Skip, Detail: err.Error()}
	}
	var factor []byte
	if ia.Factor == profiles.FactorChallenge {
		chk, ch := r.challenge(ctx)
		if chk.Verdict != Pass {
			chk.Detail = "GET CHALLENGE before INTERNAL AUTHENTICATE: " + chk.Detail
			return chk
		}
		factor = ch
	} else if factor, err = profiles.DivInput(ia.Factor, r.cardID); err != nil {
		return Check{Command: composed(shape), Verdict: Fail, Detail: err.Error()}
	}
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		return Check{Verdict: Fail, Detail: err.Error()}
	}
	block, err := secure.InternalAuthData(r.alg, random)
	if err != nil {
		return Check{Verdict: Fail, Detail: err.Error()}
	}
	want, err := r.o.Keys.Encrypt(ctx, req, block)
	if err != nil {
		return Check{Command: composed(shape), Verdict: Fail, Detail: "key holder: " + err.Error()}
	}
	cmd := apdu.Command{INS: 0x88, P2: shape.P2, Data: append(factor, random...), Ne: r.alg.BlockSize(), Sensitive: true, Name: "INTERNAL AUTHENTICATE"}
	return r.exchange(ctx, cmd, fmt.Sprintf("9000 and %d bytes equal to the key holder's encryption under %s", r.alg.BlockSize(), holder), func(resp apdu.Response) string {
		if why := swIs(resp, apdu.SWOK); why != "" {
			return why
		}
		if subtle.ConstantTimeCompare(resp.Data, want) != 1 {
			return "the answer differs from the key holder's: the card is not genuine, or its keys are not this station's"
		}
		return ""
	})
}

// pinTries is the empty VERIFY where the profile says the card answers it
// without spending a try; skipped elsewhere (it might spend one).
func (r *runner) pinTries(ctx context.Context) Check {
	cmd := apdu.Command{INS: 0x20, Name: "VERIFY (tries)"}
	if !r.p.PIN.RetriesByEmptyVerify {
		return Check{Command: composed(cmd), Expected: "not sent", Verdict: Skip,
			Detail: "the profile says this card cannot report its PIN tries without spending one"}
	}
	if c, skip := r.after(cmd, ""); skip {
		return c
	}
	return r.exchange(ctx, cmd, fmt.Sprintf("63Cx with x tries left (at most %d), or 6983 (blocked)", r.p.PIN.Tries), func(resp apdu.Response) string {
		if n, ok := resp.SW.Retries(); ok {
			if n > r.p.PIN.Tries {
				return fmt.Sprintf("%d tries left, the profile allows %d", n, r.p.PIN.Tries)
			}
			return ""
		}
		return swIs(resp, apdu.SWAuthBlocked)
	})
}
