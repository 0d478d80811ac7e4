package daemon

// cardwork.go is the one place the daemon calls cardapp and
// station/issuance: those packages change under other hands, so every
// call into them is here, and so is the mapping of their errors to
// service problems.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
	"ssstation/station/issuance"
	"ssstation/station/journal"
	"ssstation/station/service"
)

// cardInfo is what a read learnt, cached per insertion.
type cardInfo struct {
	gen  uint64
	info *cardapp.BasicInfo
	full bool
}

// ReadResult is the read kinds' result.
type ReadResult struct {
	Card         cardapp.BasicInfo `json:"card"`
	IReadCardBas string            `json:"ireadcardbas"`
	Cached       bool              `json:"cached"`
	SSNMasked    bool              `json:"ssn_masked"`
	// TestKeys: this station runs with the public test keys (shown only
	// then): what it proves of a card's genuineness proves nothing.
	TestKeys bool `json:"test_keys,omitempty"`
}

// readResult shapes a cached or fresh read for the caller: the SSN masked
// unless the caller's role may see it (in the structured fields and in the
// legacy string alike).
func (d *Daemon) readResult(info *cardapp.BasicInfo, cached bool, c service.Caller) ReadResult {
	out := ReadResult{Card: *info, Cached: cached, TestKeys: d.opts.TestKeys}
	if out.Card.Holder != nil {
		h := *out.Card.Holder
		out.Card.Holder = &h
	}
	if !c.MaySeeSSN && out.Card.SSN != "" {
		out.Card.SSN = cardapp.MaskedSSN(out.Card.SSN)
		out.SSNMasked = true
	}
	out.IReadCardBas = out.Card.IReadCardBas(d.opts.TerminalNo, d.opts.DeviceNo)
	return out
}

// workOut is what one card operation produced.
type workOut struct {
	result    any
	cardID    string
	ssnMasked string
	cache     *cardInfo // a fresh read to cache
	journalOp string
}

// profileFor is the profile the ATR names (for checks before any APDU).
func (d *Daemon) profileFor(atr []byte) *profiles.Profile {
	if len(atr) == 0 {
		return nil
	}
	c := d.opts.Profiles.MatchATR(atr)
	if len(c) == 0 {
		return nil
	}
	return c[0]
}

// precheck refuses, before queueing, what can be refused without a card:
// PIN formats and holder data (no APDU for a bad request).
func (d *Daemon) precheck(req *service.Request, atr []byte, pad padState) error {
	if req.PINEntry == service.PINEntryPinpad {
		return pinpadPrecheck(req.Kind, pad)
	}
	p := d.profileFor(atr)
	digits := func(pins ...string) error {
		for _, pin := range pins {
			if pin == "" {
				return cardapp.ErrPINMissing
			}
			for _, c := range pin {
				if c < '0' || c > '9' {
					return cardapp.ErrPINIllegalChars
				}
			}
			if len(pin) > 12 {
				return cardapp.ErrPINLength
			}
		}
		return nil
	}
	newPIN := func(pin, confirm string) error {
		if err := digits(pin); err != nil {
			return err
		}
		if p != nil {
			return cardapp.CheckNewPIN(p, pin, confirm)
		}
		if pin != confirm {
			return cardapp.ErrPINMismatch
		}
		return nil
	}
	var err error
	switch req.Kind {
	case service.KindPINVerify:
		err = digits(req.PIN)
	case service.KindActivate:
		err = newPIN(req.PIN, req.PINConfirm)
	case service.KindPINChange:
		if err = digits(req.OldPIN); err == nil {
			err = newPIN(req.NewPIN, req.PINConfirm)
		}
	case service.KindPINReload:
		err = newPIN(req.NewPIN, req.PINConfirm)
	case service.KindPersonalize:
		var pr *cardapp.PersonalizeRequest
		if pr, err = decodePersonalize(req.Personalize); err == nil && p != nil {
			err = cardapp.ValidateRequest(p, pr)
		}
	case service.KindBlock:
		switch cardapp.BlockKind(req.BlockKind) {
		case cardapp.BlockTemporary, cardapp.BlockPermanent, cardapp.BlockCard:
		case "":
			req.BlockKind = string(cardapp.BlockTemporary)
		default:
			err = &service.Problem{Code: service.CodeInvalidData, Title: "unknown block kind", Detail: "block_kind is temporary, permanent or card"}
		}
	case service.KindAPDU:
		_, err = decodeAPDUs(req.APDUs)
	case service.KindResume:
		if req.OpID == "" {
			err = &service.Problem{Code: service.CodeInvalidData, Title: "op_id is required to resume an operation"}
		}
	}
	if err != nil {
		return problemFor(err, "")
	}
	return nil
}

func decodePersonalize(raw json.RawMessage) (*cardapp.PersonalizeRequest, error) {
	if len(raw) == 0 {
		return nil, &service.Problem{Code: service.CodeInvalidData, Title: "holder and card data are required"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var pr cardapp.PersonalizeRequest
	if err := dec.Decode(&pr); err != nil {
		return nil, &service.Problem{Code: service.CodeInvalidData, Title: "holder and card data are malformed"}
	}
	return &pr, nil
}

// pinINS are the instructions whose data is a PIN or a PIN block: the raw
// APDU route refuses them (PINs travel through the PIN operations only).
var pinINS = map[byte]bool{0x20: true, 0x24: true, 0x2C: true, 0x5E: true}

func decodeAPDUs(in []string) ([][]byte, error) {
	if len(in) == 0 || len(in) > 32 {
		return nil, &service.Problem{Code: service.CodeInvalidData, Title: "between 1 and 32 APDUs are required"}
	}
	out := make([][]byte, 0, len(in))
	for _, s := range in {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil || len(b) < 4 {
			return nil, &service.Problem{Code: service.CodeInvalidData, Title: "an APDU is not hex of at least 4 bytes"}
		}
		if pinINS[b[1]] {
			return nil, &service.Problem{Code: service.CodeInvalidData, Title: "PIN-bearing APDUs are refused on the raw route"}
		}
		out = append(out, b)
	}
	return out, nil
}

// run does one operation on a connected card, inside its transaction.
func (d *Daemon) cardWork(ctx context.Context, card *pcsc.Card, w *worker, req service.Request, kp keys.Provider, cached *cardInfo) (workOut, error) {
	opts := cardapp.Options{Keys: kp}
	runner := &issuance.Runner{Journal: d.opts.Journal, Set: d.opts.Profiles, Opts: opts, Secret: d.opts.Secret}
	var out workOut
	known := func(info *cardapp.BasicInfo) {
		out.cardID = info.CardID
		if info.SSN != "" {
			out.ssnMasked = cardapp.MaskedSSN(info.SSN)
		}
	}
	if cached != nil {
		known(cached.info)
	}
	identify := func() (*cardapp.App, error) {
		app, err := cardapp.Identify(ctx, card, d.opts.Profiles, opts)
		if err != nil {
			return nil, err
		}
		if out.cardID == "" {
			if id, err := app.CardID(ctx); err == nil {
				out.cardID = fmt.Sprintf("%X", id)
			}
		}
		return app, nil
	}
	outcome := func(oc *issuance.Outcome) {
		if oc != nil {
			out.journalOp = oc.OpID
		}
	}

	switch req.Kind {
	case service.KindRead, service.KindReadFull:
		app, err := cardapp.Identify(ctx, card, d.opts.Profiles, opts)
		if err != nil {
			return out, err
		}
		var info *cardapp.BasicInfo
		if req.Kind == service.KindReadFull {
			info, err = app.ReadFullInfo(ctx)
		} else {
			info, err = app.ReadBasicInfo(ctx)
		}
		if err != nil {
			return out, err
		}
		known(info)
		out.cache = &cardInfo{info: info, full: req.Kind == service.KindReadFull}
		out.result = d.readResult(info, false, req.Caller)
	case service.KindVerifyCard:
		app, err := identify()
		if err != nil {
			return out, err
		}
		v, err := app.VerifyCard(ctx, time.Now())
		if err != nil {
			return out, err
		}
		out.result = v
	case service.KindPINTries:
		app, err := identify()
		if err != nil {
			return out, err
		}
		st, err := app.PINTries(ctx)
		if err != nil {
			return out, err
		}
		out.result = st
	case service.KindPINVerify:
		app, err := identify()
		if err != nil {
			return out, err
		}
		if req.PINEntry == service.PINEntryPinpad {
			if err := app.VerifyPINOnPad(ctx, d.padOf(card), cardapp.PINPadOptions{}); err != nil {
				return out, padError(err)
			}
			out.result = map[string]bool{"verified": true}
			break
		}
		if err := app.VerifyPIN(ctx, req.PIN); err != nil {
			return out, err
		}
		out.result = map[string]bool{"verified": true}
	case service.KindPINChange:
		app, err := identify()
		if err != nil {
			return out, err
		}
		if req.PINEntry == service.PINEntryPinpad {
			if err := app.ChangePINOnPad(ctx, d.padOf(card), cardapp.PINPadOptions{}); err != nil {
				return out, padError(err)
			}
			out.result = map[string]bool{"changed": true}
			break
		}
		if err := app.ChangePIN(ctx, req.OldPIN, req.NewPIN, req.PINConfirm); err != nil {
			return out, err
		}
		out.result = map[string]bool{"changed": true}
	case service.KindPINReload:
		app, err := identify()
		if err != nil {
			return out, err
		}
		if err := app.ReloadPIN(ctx, req.NewPIN, req.PINConfirm); err != nil {
			return out, err
		}
		out.result = map[string]bool{"reloaded": true}
	case service.KindPINUnblock:
		app, err := identify()
		if err != nil {
			return out, err
		}
		if err := app.UnblockPIN(ctx); err != nil {
			return out, err
		}
		out.result = map[string]bool{"unblocked": true}
	case service.KindActivate:
		res, oc, err := runner.Activate(ctx, card, w.name, req.OpID, req.PIN, req.PINConfirm)
		outcome(oc)
		if res != nil && res.CardID != "" {
			out.cardID = res.CardID
		}
		if err != nil {
			return out, err
		}
		out.result = map[string]any{"activation": res, "journal": oc}
	case service.KindPersonalize:
		pr, err := decodePersonalize(req.Personalize)
		if err != nil {
			return out, err
		}
		if pr.Holder.SSN != "" {
			out.ssnMasked = cardapp.MaskedSSN(pr.Holder.SSN)
		}
		opID := req.OpID
		if opID == "" {
			// A personalization this card left unfinished (a pulled card, a
			// daemon killed mid-way) is resumed by sending the same data again.
			opID, err = d.unfinished(ctx, card, opts, &out, journal.KindPersonalize)
			if err != nil {
				return out, err
			}
		}
		res, oc, err := runner.Personalize(ctx, card, w.name, opID, pr, req.Lock)
		outcome(oc)
		if res != nil && res.CardID != "" {
			out.cardID = res.CardID
		}
		if err != nil {
			return out, err
		}
		out.result = map[string]any{"personalization": res, "journal": oc}
	case service.KindBlock:
		oc, err := runner.Block(ctx, card, w.name, req.OpID, cardapp.BlockKind(req.BlockKind))
		outcome(oc)
		if err != nil {
			return out, err
		}
		out.result = map[string]any{"blocked": req.BlockKind, "journal": oc}
	case service.KindUnblock:
		app, err := identify()
		if err != nil {
			return out, err
		}
		if err := app.Unblock(ctx); err != nil {
			return out, err
		}
		out.result = map[string]bool{"unblocked": true}
	case service.KindAPDU:
		cmds, err := decodeAPDUs(req.APDUs)
		if err != nil {
			return out, err
		}
		var resps []string
		for _, c := range cmds {
			cmd, err := apdu.ParseCommand(c)
			if err != nil {
				return out, &service.Problem{Code: service.CodeInvalidData, Title: "an APDU is malformed"}
			}
			r, err := card.Transmit(ctx, cmd)
			if err != nil {
				return out, err
			}
			resps = append(resps, fmt.Sprintf("%X%04X", r.Data, uint16(r.SW)))
		}
		out.result = map[string]any{"responses": resps}
	case service.KindConform:
		rep, err := d.conformWork(ctx, card, req, kp)
		if err != nil {
			return out, err
		}
		out.result = rep
	case service.KindResume:
		e, err := d.opts.Journal.Get(req.OpID)
		if err != nil {
			return out, &service.Problem{Code: service.CodeNotFound, Title: "no journaled operation with this id"}
		}
		next := req
		next.OpID = e.OpID
		switch e.Kind {
		case journal.KindPersonalize:
			if len(next.Personalize) == 0 {
				return out, &service.Problem{Code: service.CodeInvalidData, Title: "a personalization resumes when the same holder and card data are sent again",
					Detail: "POST /v1/card/personalize with the same data: the unfinished operation on this card is found and resumed"}
			}
			next.Kind = service.KindPersonalize
		case journal.KindActivate:
			next.Kind = service.KindActivate
		case journal.KindBlock:
			next.Kind = service.KindBlock
		default:
			return out, &service.Problem{Code: service.CodeInvalidData, Title: "this journaled operation cannot be resumed from the API"}
		}
		if next.Kind == service.KindBlock && next.BlockKind == "" {
			next.BlockKind = string(cardapp.BlockTemporary)
		}
		return d.cardWork(ctx, card, w, next, kp, cached)
	default:
		return out, &service.Problem{Code: service.CodeInvalidData, Title: "unknown operation kind"}
	}
	return out, nil
}

// unfinished finds the journal's unfinished operation of kind on this
// card ("" when there is none), learning the card id on the way.
func (d *Daemon) unfinished(ctx context.Context, card *pcsc.Card, opts cardapp.Options, out *workOut, kind string) (string, error) {
	id := out.cardID
	if id == "" {
		app, err := cardapp.Identify(ctx, card, d.opts.Profiles, opts)
		if err != nil {
			return "", err
		}
		raw, err := app.CardID(ctx)
		if err != nil {
			return "", err
		}
		id = fmt.Sprintf("%X", raw)
		out.cardID = id
	}
	pending, err := d.opts.Journal.Unfinished(id)
	if err != nil {
		return "", nil
	}
	for _, e := range pending {
		if e.Kind == kind {
			return e.OpID, nil
		}
	}
	return "", nil
}

// needsKeys reports whether an operation needs the key provider.
func needsKeys(k service.Kind) bool {
	switch k {
	// Reads need the keys when the station has them: iReadCardBas proves
	// the card genuine (INTERNAL AUTHENTICATE) whenever a key provider is
	// configured, and a 3.0 card's EF06 waits for RKSSSE (card-reference
	// §9). Without a provider they read what they can and say so.
	case service.KindPINTries, service.KindPINVerify, service.KindAPDU:
		return false
	}
	return true
}

// resetsCard reports whether the card is reset when the operation ends
// (a PIN was verified or something was written).
func resetsCard(k service.Kind) bool {
	// The conformance kit authenticates (EXTERNAL AUTHENTICATE): that
	// state must not outlive it.
	return k.Writes() || k == service.KindPINVerify || k == service.KindConform
}

// legacyOfSW is the standard interface's code for a status word: minus the
// SW read as one decimal number (card-reference §7).
func legacyOfSW(sw apdu.StatusWord) int { return -int(uint16(sw)) }

// problemFor maps an error from cardapp, issuance or pcsc to a problem in
// our own words (never an OS string, never a PIN or ID number).
func problemFor(err error, readerID string) *service.Problem {
	if err == nil {
		return nil
	}
	p := mapProblem(err)
	if p.ReaderID == "" {
		p.ReaderID = readerID
	}
	return p
}

func mapProblem(err error) *service.Problem {
	if p, ok := service.AsProblem(err); ok {
		cp := *p
		return &cp
	}
	p := mapCardError(err)
	// cardapp's code wins, but for its catch-all (-4) where the mapping
	// above knows a closer one (invalid data -23, a card refusal -SW…).
	if lc := cardapp.LegacyCode(err); p.Code != service.CodeInternal && (lc != cardapp.CodeNoAnswer || p.LegacyCode == 0) {
		p.LegacyCode = lc
	}
	return p
}

func mapCardError(err error) *service.Problem {
	var sw apdu.StatusWord
	hasSW := errors.As(err, &sw)
	swText := ""
	if hasSW {
		swText = fmt.Sprintf("%04X", uint16(sw))
	}
	tries := func(n int) *int { return &n }
	var pol *cardapp.PolicyError
	var wrong *cardapp.WrongPIN
	var wrongKey *cardapp.WrongKey
	var unknown *cardapp.UnknownCardError
	switch {
	case errors.As(err, &pol):
		return &service.Problem{Code: service.CodePINPolicy, Title: "PIN refused by the station's rules", Detail: pol.Msg, LegacyCode: pol.Code}
	case errors.Is(err, cardapp.ErrInvalidData):
		return &service.Problem{Code: service.CodeInvalidData, Title: "holder or card data refused", Detail: err.Error(), LegacyCode: -23}
	case errors.Is(err, cardapp.ErrPINBlocked):
		return &service.Problem{Code: service.CodePINBlocked, Title: "PIN blocked", Detail: "too many wrong tries: the PIN must be unblocked at a bank outlet",
			LegacyCode: -52, SW: swText, TriesLeft: tries(0)}
	case errors.As(err, &wrong):
		return &service.Problem{Code: service.CodePINIncorrect, Title: "wrong PIN", Detail: fmt.Sprintf("%d tries left", wrong.Retries),
			LegacyCode: -51, SW: swText, TriesLeft: tries(wrong.Retries), Retryable: wrong.Retries > 0}
	case errors.As(err, &wrongKey):
		return &service.Problem{Code: service.CodeCardRefused, Title: "the card refused the station's key", Detail: wrongKey.Error(), LegacyCode: legacyOfSW(sw), SW: swText}
	case errors.Is(err, cardapp.ErrCardNotGenuine):
		return &service.Problem{Code: service.CodeCardNotGenuine, Title: "the card is not genuine", LegacyCode: -21, SW: swText}
	case errors.As(err, &unknown) || errors.Is(err, cardapp.ErrUnknownCard):
		return &service.Problem{Code: service.CodeCardUnknown, Title: "not a known social security card", LegacyCode: -1}
	case errors.Is(err, cardapp.ErrCardExpired):
		return &service.Problem{Code: service.CodeCardExpired, Title: "the card has expired", SW: swText}
	case errors.Is(err, cardapp.ErrApplicationLocked), errors.Is(err, cardapp.ErrApplicationBlocked), errors.Is(err, cardapp.ErrCardBlocked):
		return &service.Problem{Code: service.CodeCardBlocked, Title: "the card or its application is blocked", Detail: cardText(err), LegacyCode: legacyOfSW(sw), SW: swText}
	case errors.Is(err, cardapp.ErrNoPINPad):
		return &service.Problem{Code: service.CodePINPadMissing, Title: "this reader has no PIN pad", Detail: "send the PIN in the request (pin_entry \"host\")"}
	case errors.Is(err, cardapp.ErrPINPadTimeout), errors.Is(err, cardapp.ErrPINPadCancelled), errors.Is(err, cardapp.ErrPINPadMismatch),
		errors.Is(err, cardapp.ErrPINPadRejected), errors.Is(err, cardapp.ErrPINPadLength):
		return &service.Problem{Code: service.CodePINPadEntry, Title: "the PIN pad entry did not complete", Detail: cardText(err) + " (no try was spent)", Retryable: true}
	case errors.Is(err, issuance.ErrOtherCard):
		return &service.Problem{Code: service.CodeOtherCard, Title: "this operation belongs to another card", Detail: "nothing was written", LegacyCode: -22}
	case errors.Is(err, issuance.ErrInterrupted):
		return &service.Problem{Code: service.CodeInterrupted, Title: "the operation was interrupted", Detail: "put the same card back and resume it", Retryable: true, RetryAfter: time.Second}
	}
	switch pcsc.KindOf(err) {
	case pcsc.KindCardRemoved:
		return &service.Problem{Code: service.CodeCardRemoved, Title: "the card was removed during the operation", Retryable: true, LegacyCode: -2}
	case pcsc.KindNoCard:
		return &service.Problem{Code: service.CodeCardAbsent, Title: "no card in the reader", Retryable: true, LegacyCode: -2}
	case pcsc.KindUnresponsive, pcsc.KindProtocol:
		return &service.Problem{Code: service.CodeCardRefused, Title: "the card does not respond", Retryable: true, LegacyCode: -4}
	case pcsc.KindServiceGone, pcsc.KindNoReaders:
		return &service.Problem{Code: service.CodePCSCUnavailable, Title: "the smart card service is unavailable", Retryable: true, RetryAfter: 2 * time.Second, LegacyCode: -11}
	case pcsc.KindReaderGone:
		return &service.Problem{Code: service.CodeReaderNotFound, Title: "the reader went away", Retryable: true, LegacyCode: -11}
	case pcsc.KindSharing:
		return &service.Problem{Code: service.CodeReaderBusy, Title: "another program holds the card", Retryable: true, RetryAfter: time.Second, LegacyCode: -11}
	case pcsc.KindCancelled:
		return &service.Problem{Code: service.CodeCancelled, Title: "the operation was cancelled"}
	case pcsc.KindCardReset:
		return &service.Problem{Code: service.CodeCardRemoved, Title: "the card was reset during the operation", Retryable: true}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &service.Problem{Code: service.CodeCancelled, Title: "the operation was cancelled"}
	}
	if errors.Is(err, keys.ErrNoProvider) {
		return &service.Problem{Code: service.CodeNoKeyProvider, Title: "no key provider is configured for this operation"}
	}
	if errors.Is(err, keys.ErrKeyNotFound) || errors.Is(err, keys.ErrClosed) {
		return &service.Problem{Code: service.CodeKeyProviderFailed, Title: "the key provider could not compute for this card"}
	}
	if hasSW || errors.Is(err, cardapp.ErrSecurityStatus) || errors.Is(err, cardapp.ErrConditions) || errors.Is(err, cardapp.ErrNotFound) || errors.Is(err, cardapp.ErrMACRejected) || errors.Is(err, cardapp.ErrNotSupported) || errors.Is(err, cardapp.ErrAlreadyFinalized) {
		return &service.Problem{Code: service.CodeCardRefused, Title: "the card refused the operation", Detail: cardText(err), LegacyCode: legacyOfSW(sw), SW: swText}
	}
	return &service.Problem{Code: service.CodeInternal, Title: "the operation failed", Detail: "see the station log"}
}

// cardText is cardapp's text for a card outcome: our own words, and by
// cardapp's rule free of PINs, keys and full ID numbers.
func cardText(err error) string {
	return journal.RedactIDNumbers(err.Error())
}
