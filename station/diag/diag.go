// Package diag tells a technician, within a minute, whether the PC/SC
// service, a reader, a card, the keys or the station's own files are at
// fault. Run takes everything it looks at as parameters (a PC/SC context,
// the profiles, the key provider, the configuration, file paths) and
// returns a Report: `sscard diag` prints it as a table or JSON, and the
// daemon can serve the same Report (GET /v1/diagnostics). Nothing here
// writes to a card, spends a PIN try or opens a file for writing.
package diag

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/atr"
	"ssstation/station/config"
)

// Options are Run's dependencies and settings.
type Options struct {
	// PCSC is the caller's context with the smart card service; nil means
	// the service could not be reached (ServiceError says why).
	PCSC         *pcsc.Context
	ServiceError error
	// Readers restricts the run to these reader names (empty: every reader).
	Readers []string
	// PSAMReader is the reader holding the PSAM, if any: it is listed, and
	// its card checked as the key provider, never identified as a holder card.
	PSAMReader string
	// Profiles identify the cards.
	Profiles *profiles.Set
	// Keys is the key provider (nil or keys.None: no keys); KeysSource says
	// what it is ("psam", "software", "test", "none").
	Keys       keys.Provider
	KeysSource string
	// KeysError is why the configured provider could not be reached (a
	// PSAM missing from its reader, a key file refused): a problem found.
	KeysError error
	// Config is reported with its secrets removed (nil: not reported).
	Config *config.Config
	// JournalPath (sscard's journal) and StorePath (stationd's store: its
	// journal and audit trail) are opened read-only; "" skips them.
	JournalPath string
	StorePath   string
	// Latency is the number of GET CHALLENGEs of the latency test (0: 10).
	Latency int
	// Progress, when set, is told of the latency test's progress.
	Progress func(reader string, done, total int)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// DefaultLatency is the number of GET CHALLENGEs when Options.Latency is 0.
const DefaultLatency = 10

// Report is the whole diagnosis. OK is false when any part found a
// problem; Problems lists them all, each naming its part.
type Report struct {
	Time     time.Time      `json:"time"`
	OK       bool           `json:"ok"`
	Problems []string       `json:"problems"`
	Service  ServiceReport  `json:"service"`
	Readers  []ReaderReport `json:"readers"`
	Keys     KeysReport     `json:"keys"`
	Config   map[string]any `json:"config,omitempty"`
	Journal  FileHealth     `json:"journal"`
	Store    FileHealth     `json:"store"`
}

// ServiceReport is the PC/SC service.
type ServiceReport struct {
	Reachable bool   `json:"reachable"`
	Readers   int    `json:"readers"`
	Error     string `json:"error,omitempty"`
}

// ReaderReport is one reader and the card in it.
type ReaderReport struct {
	Name        string                 `json:"name"`
	Role        string                 `json:"role"` // "card" or "psam"
	CardPresent bool                   `json:"card_present"`
	Mute        bool                   `json:"mute,omitempty"`
	Attributes  *pcsc.ReaderAttributes `json:"attributes,omitempty"`
	Features    *pcsc.ReaderFeatures   `json:"features,omitempty"`
	// MaxAPDUData is the largest command data field one APDU carries on
	// this reader and card (255: short APDUs, longer data chained).
	MaxAPDUData int         `json:"max_apdu_data,omitempty"`
	Protocol    string      `json:"protocol,omitempty"`
	Card        *CardReport `json:"card,omitempty"`
	Error       string      `json:"error,omitempty"`
}

// CardReport is one card.
type CardReport struct {
	ATR            string                  `json:"atr"`
	ATRDecoded     *atr.ATR                `json:"atr_decoded,omitempty"`
	ATRError       string                  `json:"atr_error,omitempty"`
	Identification *cardapp.Identification `json:"identification,omitempty"`
	IdentifyError  string                  `json:"identify_error,omitempty"`
	PIN            *cardapp.PINStatus      `json:"pin,omitempty"`
	PINNote        string                  `json:"pin_note,omitempty"`
	Files          []FileCheck             `json:"files,omitempty"`
	Latency        *Latency                `json:"latency,omitempty"`
	Transaction    *TransactionCheck       `json:"transaction,omitempty"`
}

// FileCheck is one of the profile's files, selected.
type FileCheck struct {
	Name    string `json:"name"`
	FID     string `json:"fid"`
	Command string `json:"command"`
	SW      string `json:"sw"`
	Answers bool   `json:"answers"`
	Error   string `json:"error,omitempty"`
}

// Latency is the GET CHALLENGE round trip, through the whole stack.
type Latency struct {
	N        int     `json:"n"`
	OK       int     `json:"ok"`
	MinMS    float64 `json:"min_ms"`
	MedianMS float64 `json:"median_ms"`
	MaxMS    float64 `json:"max_ms"`
	Error    string  `json:"error,omitempty"`
}

// TransactionCheck: a transaction begun and ended again after the others.
type TransactionCheck struct {
	OK    bool    `json:"ok"`
	MS    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

// KeysReport is the key provider.
type KeysReport struct {
	Provider string `json:"provider"`
	// Configured is false when the station has no key provider: reads
	// work; genuineness, writes and PIN reload do not.
	Configured  bool       `json:"configured"`
	TestKeys    bool       `json:"test_keys,omitempty"`
	PSAMReader  string     `json:"psam_reader,omitempty"`
	PSAMPresent *bool      `json:"psam_present,omitempty"`
	Keys        []KeyCheck `json:"keys,omitempty"`
	Note        string     `json:"note,omitempty"`
}

// KeyCheck is one key the profiles use, asked for a cryptogram.
type KeyCheck struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Answers   bool   `json:"answers"`
	Via       string `json:"via,omitempty"` // "encrypt" or "mac"
	Error     string `json:"error,omitempty"`
}

// FileHealth is a station file opened read-only.
type FileHealth struct {
	Path    string `json:"path,omitempty"`
	State   string `json:"state"` // "ok", "absent", "locked", "damaged", "not checked"
	Entries int    `json:"entries,omitempty"`
	// Unfinished journal entries wait for their card (resume with --op).
	Unfinished int    `json:"unfinished,omitempty"`
	Damaged    int    `json:"damaged,omitempty"`
	AuditOK    *bool  `json:"audit_chain_ok,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// Run diagnoses. Its error is reserved for a cancelled context; every
// problem found is in the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	r := &Report{Time: now().UTC(), Problems: []string{}, Readers: []ReaderReport{}}
	problem := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }

	r.Service = serviceCheck(o)
	if !r.Service.Reachable {
		problem("PC/SC service: %s", r.Service.Error)
	} else {
		names, err := o.PCSC.Readers()
		if err != nil {
			r.Service.Error = err.Error()
			problem("PC/SC service: %v", err)
		}
		r.Service.Readers = len(names)
		if len(names) == 0 && err == nil {
			problem("PC/SC service: no reader is connected")
		}
		for _, name := range names {
			if len(o.Readers) > 0 && !contains(o.Readers, name) && name != o.PSAMReader {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rr := checkReader(ctx, o, name)
			for _, p := range readerProblems(rr) {
				problem("reader %q: %s", name, p)
			}
			r.Readers = append(r.Readers, rr)
		}
		for _, want := range o.Readers {
			if !contains(names, want) {
				problem("reader %q: not connected", want)
			}
		}
	}
	r.Keys = checkKeys(ctx, o, r.Readers)
	if o.KeysError != nil {
		r.Keys.Note = o.KeysError.Error()
		problem("keys: %v", o.KeysError)
	}
	if r.Keys.Configured {
		for _, k := range r.Keys.Keys {
			if !k.Answers {
				problem("keys: %s (%s) does not answer: %s", k.Name, k.Algorithm, k.Error)
			}
		}
	}
	if r.Keys.PSAMPresent != nil && !*r.Keys.PSAMPresent {
		problem("keys: no PSAM in %q", r.Keys.PSAMReader)
	}
	if o.Config != nil {
		r.Config = RedactConfig(o.Config)
	}
	r.Journal = checkJournal(o.JournalPath)
	if r.Journal.State == "damaged" {
		problem("journal %s: %s", r.Journal.Path, r.Journal.Detail)
	}
	r.Store = checkStore(o.StorePath)
	if r.Store.State == "damaged" || (r.Store.AuditOK != nil && !*r.Store.AuditOK) {
		problem("store %s: %s", r.Store.Path, r.Store.Detail)
	}
	r.OK = len(r.Problems) == 0
	return r, ctx.Err()
}

func serviceCheck(o Options) ServiceReport {
	if o.PCSC == nil {
		msg := "not reachable (is pcscd running?)"
		if o.ServiceError != nil {
			msg = o.ServiceError.Error()
		}
		return ServiceReport{Error: msg}
	}
	if !o.PCSC.Valid() {
		return ServiceReport{Error: "the service forgot this context (pcscd restarted?)"}
	}
	return ServiceReport{Reachable: true}
}

func readerProblems(rr ReaderReport) []string {
	var out []string
	if rr.Error != "" {
		out = append(out, rr.Error)
	}
	if rr.Mute {
		out = append(out, "the card does not answer reset (mute): turn it round, clean it, or try another card")
	}
	c := rr.Card
	if c == nil {
		return out
	}
	if c.IdentifyError != "" {
		out = append(out, "card: "+c.IdentifyError)
	}
	if c.PIN != nil && c.PIN.Blocked {
		out = append(out, "card: the PIN is blocked (the holder needs PIN unblock at a bank outlet or the service hall)")
	}
	if c.ATRError != "" {
		out = append(out, "ATR: "+c.ATRError)
	}
	for _, f := range c.Files {
		if !f.Answers {
			out = append(out, fmt.Sprintf("file %s does not answer SELECT (%s%s)", f.Name, f.SW, f.Error))
		}
	}
	if c.Latency != nil && c.Latency.Error != "" {
		out = append(out, "latency test: "+c.Latency.Error)
	}
	if c.Transaction != nil && !c.Transaction.OK {
		out = append(out, "transaction test: "+c.Transaction.Error)
	}
	return out
}

// checkReader reads one reader's status, attributes and features, and
// diagnoses its card.
func checkReader(ctx context.Context, o Options, name string) ReaderReport {
	rr := ReaderReport{Name: name, Role: "card"}
	if name == o.PSAMReader && name != "" {
		rr.Role = "psam"
	}
	st, err := o.PCSC.Status([]string{name})
	if err != nil || len(st) != 1 {
		rr.Error = fmt.Sprintf("status: %v", err)
		return rr
	}
	rr.CardPresent, rr.Mute = st[0].CardPresent, st[0].Mute
	if !rr.CardPresent {
		// Ask the reader itself (direct mode): a driver that refuses it
		// without a card is not at fault, so a refusal is no problem.
		if ra, rf, err := o.PCSC.ReaderInfo(ctx, name); err == nil {
			rr.Attributes, rr.Features = ra, rf
		}
		return rr
	}
	card, err := o.PCSC.Connect(ctx, name, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
	if err != nil {
		rr.Error = fmt.Sprintf("connect: %v", err)
		return rr
	}
	defer card.Close()
	if rr.Attributes, err = card.Attributes(ctx); err != nil {
		rr.Error = fmt.Sprintf("attributes: %v", err)
	}
	if rr.Features, err = card.Features(ctx); err != nil {
		rr.Error = fmt.Sprintf("part 10 features: %v", err)
	}
	rr.MaxAPDUData = card.MaxAPDUData()
	rr.Protocol = pcsc.ProtocolName(card.Protocol())
	cr := &CardReport{ATR: fmt.Sprintf("%X", card.ATR())}
	a, aerr := atr.Parse(card.ATR())
	cr.ATRDecoded = a
	if aerr != nil {
		cr.ATRError = aerr.Error()
	}
	rr.Card = cr
	if rr.Role == "psam" {
		return rr
	}
	checkCard(ctx, o, card, cr)
	return rr
}

// checkCard identifies the card, reads its PIN tries where that spends
// nothing, selects each of the profile's files, and runs the latency and
// transaction tests.
func checkCard(ctx context.Context, o Options, card *pcsc.Card, cr *CardReport) {
	if o.Profiles == nil {
		cr.IdentifyError = "no firmware profiles loaded"
		return
	}
	var prof *profiles.Profile
	err := card.Transaction(ctx, func(ctx context.Context) error {
		// No key provider here: identification reads only free records,
		// and a diagnosis proves nothing with keys it does not need.
		app, err := cardapp.Identify(ctx, card, o.Profiles, cardapp.Options{})
		if err != nil {
			return err
		}
		cr.Identification = app.Identification()
		prof = app.Profile()
		if prof.PIN.RetriesByEmptyVerify {
			if st, err := app.PINTries(ctx); err == nil {
				cr.PIN = st
			} else {
				cr.PINNote = err.Error()
			}
		} else {
			cr.PINNote = "this card cannot report its PIN tries without spending one (profile " + prof.Name + ")"
		}
		cr.Files = selectFiles(ctx, card, prof)
		return nil
	})
	if err != nil {
		cr.IdentifyError = err.Error()
		return
	}
	cr.Latency = latency(ctx, o, card, prof)
	start := time.Now()
	terr := card.Transaction(ctx, func(context.Context) error { return nil })
	cr.Transaction = &TransactionCheck{OK: terr == nil, MS: ms(time.Since(start))}
	if terr != nil {
		cr.Transaction.Error = terr.Error()
	}
}

// SelectSSSE is the SELECT of the SSSE application as profile p codes it.
func SelectSSSE(p *profiles.Profile) apdu.Command {
	return apdu.Command{INS: 0xA4, P1: 0x04, Data: p.Select.SSSEAID, Ne: 256, Name: "SELECT SSSE"}
}

// SelectFile is the SELECT of file name as profile p codes it.
func SelectFile(p *profiles.Profile, name string) apdu.Command {
	f := p.Files[name]
	return apdu.Command{INS: 0xA4, P1: p.Select.EFP1, P2: p.Select.EFP2, Data: f.FID[:], Name: "SELECT " + name}
}

func selectFiles(ctx context.Context, card *pcsc.Card, p *profiles.Profile) []FileCheck {
	names := make([]string, 0, len(p.Files))
	for n := range p.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]FileCheck, 0, len(names))
	for _, n := range names {
		// From the application each time: a file is found from there.
		if _, err := card.Transmit(ctx, SelectSSSE(p)); err != nil {
			out = append(out, FileCheck{Name: n, Error: err.Error()})
			continue
		}
		out = append(out, fileAnswers(ctx, card, p, n))
	}
	return out
}

// fileAnswers asks the file the way the station reaches it: a SELECT for a
// file the station selects, and for one read by short file identifier
// (never selected by the station) a READ RECORD of its first freely
// readable record, whose value is not kept. A record guarded by a key
// answering 6982 still shows that the file is there.
func fileAnswers(ctx context.Context, card *pcsc.Card, p *profiles.Profile, name string) FileCheck {
	f := p.Files[name]
	fc := FileCheck{Name: name, FID: hex.EncodeToString(f.FID[:])}
	cmd := SelectFile(p, name)
	guarded := false
	if !f.SelectsEF() && len(f.Records) > 0 {
		rec := f.Records[0]
		for _, r := range f.Records {
			if acc, _ := p.ReadAccess(r.Item); acc.Kind == profiles.AccessFree {
				rec = r
				break
			}
		}
		acc, _ := p.ReadAccess(rec.Item)
		guarded = acc.Kind != profiles.AccessFree
		p1, p2 := f.ReadCommand(rec)
		cmd = apdu.Command{INS: 0xB2, P1: p1, P2: p2, Ne: rec.Length + 2, Sensitive: true, Name: "READ RECORD " + rec.Item}
	}
	raw, _ := cmd.Bytes()
	fc.Command = fmt.Sprintf("% X", raw)
	resp, err := card.Transmit(ctx, cmd)
	if err != nil {
		fc.Error = err.Error()
		return fc
	}
	clear(resp.Data)
	fc.SW = resp.SW.String()
	fc.Answers = resp.SW.OK() || (guarded && resp.SW == apdu.SWSecurityStatus)
	return fc
}

// latency times n GET CHALLENGEs, each on its own, in one transaction.
func latency(ctx context.Context, o Options, card *pcsc.Card, p *profiles.Profile) *Latency {
	n := o.Latency
	if n <= 0 {
		n = DefaultLatency
	}
	l := &Latency{N: n}
	var times []time.Duration
	err := card.Transaction(ctx, func(ctx context.Context) error {
		if _, err := card.Transmit(ctx, SelectSSSE(p)); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if o.Progress != nil {
				o.Progress(card.Reader(), i, n)
			}
			start := time.Now()
			resp, err := card.Transmit(ctx, apdu.Command{INS: 0x84, Ne: 8, Name: "GET CHALLENGE"})
			d := time.Since(start)
			if err != nil {
				return err
			}
			if !resp.SW.OK() || len(resp.Data) != 8 {
				return fmt.Errorf("GET CHALLENGE answered %s with %d bytes", resp.SW.String(), len(resp.Data))
			}
			times = append(times, d)
		}
		if o.Progress != nil {
			o.Progress(card.Reader(), n, n)
		}
		return nil
	})
	if err != nil {
		l.Error = err.Error()
	}
	l.OK = len(times)
	if len(times) > 0 {
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		l.MinMS, l.MaxMS = ms(times[0]), ms(times[len(times)-1])
		l.MedianMS = ms(median(times))
	}
	return l
}

func median(sorted []time.Duration) time.Duration {
	m := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[m]
	}
	return (sorted[m-1] + sorted[m]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkKeys asks the provider for one cryptogram with each key the
// profiles name, on each profile's algorithm, diversified along the
// profile's levels from a fixed dummy card identification code: a key that
// answers is present and usable; nothing is sent to any holder card.
func checkKeys(ctx context.Context, o Options, readers []ReaderReport) KeysReport {
	kr := KeysReport{Provider: o.KeysSource}
	if kr.Provider == "" {
		kr.Provider = config.ProviderNone
	}
	kr.TestKeys = kr.Provider == config.ProviderTest
	if o.PSAMReader != "" {
		kr.PSAMReader = o.PSAMReader
		present := false
		for _, r := range readers {
			if r.Name == o.PSAMReader && r.CardPresent {
				present = true
			}
		}
		kr.PSAMPresent = &present
	}
	if keys.Ready(o.Keys) != nil {
		kr.Note = "no key provider: cards are read, but genuineness is not checked and writes, PIN reload and unblock refuse"
		return kr
	}
	kr.Configured = true
	if o.Profiles == nil {
		return kr
	}
	seen := map[string]bool{}
	dummyID := make([]byte, 16)
	for _, p := range o.Profiles.List() {
		alg, err := keys.ParseAlgorithm(p.Crypto.Algorithm)
		if err != nil {
			continue
		}
		var path [][]byte
		for _, l := range p.Crypto.Diversification.Levels {
			in, err := profiles.DivInput(l, dummyID)
			if err != nil {
				continue
			}
			path = append(path, in)
		}
		for _, name := range holderKeyNames(p) {
			id := name + "/" + string(alg)
			if seen[id] {
				continue
			}
			seen[id] = true
			kr.Keys = append(kr.Keys, probeKey(ctx, o.Keys, keys.Request{Key: keys.KeyName(name), Algorithm: alg, Path: path}))
		}
	}
	sort.Slice(kr.Keys, func(i, j int) bool {
		if kr.Keys[i].Algorithm != kr.Keys[j].Algorithm {
			return kr.Keys[i].Algorithm < kr.Keys[j].Algorithm
		}
		return kr.Keys[i].Name < kr.Keys[j].Name
	})
	return kr
}

// holderKeyNames are the key holder's names a profile uses: its holder
// keys and the keys of its commands and internal authentication.
func holderKeyNames(p *profiles.Profile) []string {
	set := map[string]bool{}
	for _, h := range p.Crypto.HolderKeys {
		set[h.Name] = true
	}
	for _, t := range p.Commands {
		if t.MACKey != "" {
			set[t.MACKey] = true
		}
		if t.EncKey != "" {
			set[t.EncKey] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func probeKey(ctx context.Context, p keys.Provider, req keys.Request) KeyCheck {
	kc := KeyCheck{Name: string(req.Key), Algorithm: string(req.Algorithm)}
	block := make([]byte, req.Algorithm.BlockSize())
	_, eerr := p.Encrypt(ctx, req, block)
	if eerr == nil {
		kc.Answers, kc.Via = true, "encrypt"
		return kc
	}
	// A PSAM may hold a key for MACs only: ask for a MAC before saying no.
	if _, merr := p.MAC(ctx, req, make([]byte, 8), make([]byte, 8)); merr == nil {
		kc.Answers, kc.Via = true, "mac"
		return kc
	}
	kc.Error = eerr.Error()
	if errors.Is(eerr, keys.ErrKeyNotFound) {
		kc.Error = "not held by the provider"
	}
	return kc
}
