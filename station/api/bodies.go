package api

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"

	"ssstation/station/service"
)

// cardBody is a card route's request body; request turns it into the
// Station's request, or a problem (the Station is then never called).
type cardBody interface {
	request(k service.Kind) (service.Request, *service.Problem)
}

var readerIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func checkReader(id string) *service.Problem {
	if id != "" && !readerIDRe.MatchString(id) {
		return newProblem(CodeInvalidRequest, "reader_id is letters, digits, '.', '_' or '-'")
	}
	return nil
}

// PIN rules the API checks before anything reaches the station: digits
// only, 4 to 12 of them (what a PIN block can carry). The card's own
// length rule is the profile's, checked by the station (PIN_POLICY).
const (
	pinMin = 4
	pinMax = 12
)

// checkPIN names the field, never its value.
func checkPIN(field, v string, entry service.PINEntry) *service.Problem {
	if entry == service.PINEntryPinpad {
		if v != "" {
			return newProblem(CodePINFormat, field+" must be left out when the PIN is typed on the PIN pad")
		}
		return nil
	}
	if v == "" {
		return newProblem(CodePINFormat, field+" is missing")
	}
	if len(v) < pinMin || len(v) > pinMax {
		return newProblem(CodePINFormat, field+" must be 4 to 12 digits")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return newProblem(CodePINFormat, field+" must be digits only")
		}
	}
	return nil
}

func checkEntry(e service.PINEntry) (service.PINEntry, *service.Problem) {
	switch e {
	case "", service.PINEntryHost:
		return service.PINEntryHost, nil
	case service.PINEntryPinpad:
		return e, nil
	}
	return "", newProblem(CodeInvalidRequest, `pin_entry is "host" or "pinpad"`)
}

func pinConfirm(newField, confirmField, a, b string, e service.PINEntry) *service.Problem {
	if p := checkPIN(newField, a, e); p != nil {
		return p
	}
	if p := checkPIN(confirmField, b, e); p != nil {
		return p
	}
	if a != b {
		p := newProblem(service.CodePINPolicy, confirmField+" differs from "+newField)
		p.LegacyCode = -34
		return p
	}
	return nil
}

type readerBody struct {
	ReaderID string `json:"reader_id"`
}

func (b *readerBody) request(k service.Kind) (service.Request, *service.Problem) {
	return service.Request{Kind: k, ReaderID: b.ReaderID}, checkReader(b.ReaderID)
}

type readBody struct {
	ReaderID string `json:"reader_id"`
	Full     bool   `json:"full"` // every EF05/EF06 item, not only the iReadCardBas ones
}

func (b *readBody) request(k service.Kind) (service.Request, *service.Problem) {
	if b.Full {
		k = service.KindReadFull
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID}, checkReader(b.ReaderID)
}

type activateBody struct {
	ReaderID   string           `json:"reader_id"`
	PINEntry   service.PINEntry `json:"pin_entry"`
	PIN        string           `json:"pin"`
	PINConfirm string           `json:"pin_confirm"`
}

func (b *activateBody) request(k service.Kind) (service.Request, *service.Problem) {
	e, p := checkEntry(b.PINEntry)
	if p == nil {
		p = checkReader(b.ReaderID)
	}
	if p == nil {
		p = pinConfirm("pin", "pin_confirm", b.PIN, b.PINConfirm, e)
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, PINEntry: e, PIN: b.PIN, PINConfirm: b.PINConfirm}, p
}

type pinVerifyBody struct {
	ReaderID string           `json:"reader_id"`
	PINEntry service.PINEntry `json:"pin_entry"`
	PIN      string           `json:"pin"`
}

func (b *pinVerifyBody) request(k service.Kind) (service.Request, *service.Problem) {
	e, p := checkEntry(b.PINEntry)
	if p == nil {
		p = checkReader(b.ReaderID)
	}
	if p == nil {
		p = checkPIN("pin", b.PIN, e)
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, PINEntry: e, PIN: b.PIN}, p
}

type pinChangeBody struct {
	ReaderID      string           `json:"reader_id"`
	PINEntry      service.PINEntry `json:"pin_entry"`
	OldPIN        string           `json:"old_pin"`
	NewPIN        string           `json:"new_pin"`
	NewPINConfirm string           `json:"new_pin_confirm"`
}

func (b *pinChangeBody) request(k service.Kind) (service.Request, *service.Problem) {
	e, p := checkEntry(b.PINEntry)
	if p == nil {
		p = checkReader(b.ReaderID)
	}
	if p == nil {
		p = checkPIN("old_pin", b.OldPIN, e)
	}
	if p == nil {
		p = pinConfirm("new_pin", "new_pin_confirm", b.NewPIN, b.NewPINConfirm, e)
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, PINEntry: e, OldPIN: b.OldPIN, NewPIN: b.NewPIN, PINConfirm: b.NewPINConfirm}, p
}

type pinReloadBody struct {
	ReaderID      string           `json:"reader_id"`
	PINEntry      service.PINEntry `json:"pin_entry"`
	NewPIN        string           `json:"new_pin"`
	NewPINConfirm string           `json:"new_pin_confirm"`
}

func (b *pinReloadBody) request(k service.Kind) (service.Request, *service.Problem) {
	e, p := checkEntry(b.PINEntry)
	if p == nil {
		p = checkReader(b.ReaderID)
	}
	if p == nil {
		p = pinConfirm("new_pin", "new_pin_confirm", b.NewPIN, b.NewPINConfirm, e)
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, PINEntry: e, NewPIN: b.NewPIN, PINConfirm: b.NewPINConfirm}, p
}

type blockBody struct {
	ReaderID  string `json:"reader_id"`
	BlockKind string `json:"block_kind"`
}

func (b *blockBody) request(k service.Kind) (service.Request, *service.Problem) {
	switch b.BlockKind {
	case "", "temporary", "permanent", "card": // "" = temporary
	default:
		return service.Request{}, newProblem(CodeInvalidRequest, `block_kind is "temporary", "permanent" or "card"`)
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, BlockKind: b.BlockKind}, checkReader(b.ReaderID)
}

// holderData and cardData mirror cardapp's personalization request (the
// API may not import cardapp); unknown fields are refused here too.
type holderData struct {
	SSN         string `json:"ssn"`
	Name        string `json:"name"`
	Gender      string `json:"gender"`
	Nationality string `json:"nationality"`
	Birthplace  string `json:"birthplace"`
	BirthDate   string `json:"birth_date"`
}

type cardData struct {
	CardType   string `json:"card_type"`
	InitOrg    string `json:"init_org"`
	IssueDate  string `json:"issue_date"`
	ExpiryDate string `json:"expiry_date"`
	CardNumber string `json:"card_number"`
}

type personalizeBody struct {
	ReaderID string      `json:"reader_id"`
	Holder   *holderData `json:"holder"`
	Card     *cardData   `json:"card"`
	Lock     bool        `json:"lock"`
}

func (b *personalizeBody) request(k service.Kind) (service.Request, *service.Problem) {
	if b.Holder == nil || b.Card == nil {
		return service.Request{}, newProblem(CodeInvalidRequest, "holder and card are required")
	}
	raw, _ := json.Marshal(struct {
		Holder *holderData `json:"holder"`
		Card   *cardData   `json:"card"`
	}{b.Holder, b.Card})
	return service.Request{Kind: k, ReaderID: b.ReaderID, Personalize: raw, Lock: b.Lock}, checkReader(b.ReaderID)
}

type resumeBody struct {
	ReaderID string `json:"reader_id"`
	OpID     string `json:"op_id"`
}

func (b *resumeBody) request(k service.Kind) (service.Request, *service.Problem) {
	if !readerIDRe.MatchString(b.OpID) {
		return service.Request{}, newProblem(CodeInvalidRequest, "op_id is the journal's operation id")
	}
	return service.Request{Kind: k, ReaderID: b.ReaderID, OpID: b.OpID}, checkReader(b.ReaderID)
}

// apduBody: the reader comes from the path.
// conformBody asks for the conformance kit's read-side checks. The
// write-side checks are refused here: they stay with the command line
// (sscard conform --destructive, on a blank card).
type conformBody struct {
	Profile     string `json:"profile"`
	Destructive bool   `json:"destructive"`
}

var profileNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (b *conformBody) request(k service.Kind) (service.Request, *service.Problem) {
	if b.Destructive {
		return service.Request{}, newProblem(CodeInvalidRequest, "the write-side checks run only from the command line: sscard conform --destructive, on a blank card")
	}
	if b.Profile != "" && !profileNameRe.MatchString(b.Profile) {
		return service.Request{}, newProblem(CodeInvalidRequest, "profile is a firmware profile's name")
	}
	return service.Request{Kind: k, Profile: b.Profile}, nil
}

type apduBody struct {
	APDUs []string `json:"apdus"`
}

func (b *apduBody) request(k service.Kind) (service.Request, *service.Problem) {
	if len(b.APDUs) == 0 || len(b.APDUs) > 32 {
		return service.Request{}, newProblem(CodeInvalidRequest, "apdus holds 1 to 32 command APDUs")
	}
	for _, a := range b.APDUs {
		raw, err := hex.DecodeString(a)
		if err != nil || len(raw) < 4 || len(raw) > 261 {
			return service.Request{}, newProblem(CodeInvalidRequest, "each APDU is 4 to 261 bytes in hex")
		}
	}
	return service.Request{Kind: k, APDUs: b.APDUs}, nil
}

// decodeJSON reads one JSON object of v's type: application/json only,
// MaxBodyBytes at most, unknown fields refused, nothing after it.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *service.Problem {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" || (params["charset"] != "" && !equalFoldASCII(params["charset"], "utf-8")) {
		return newProblem(CodeUnsupportedMedia, "send Content-Type: application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return newProblem(CodeBodyTooLarge, "the limit is 64 KiB")
		}
		return newProblem(CodeInvalidJSON, "the body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newProblem(CodeInvalidJSON, jsonErrorDetail(err))
	}
	if dec.More() {
		return newProblem(CodeInvalidJSON, "one JSON object only")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(CodeInvalidJSON, "one JSON object only")
	}
	return nil
}

// jsonErrorDetail says what is wrong in our words; it never quotes the
// body (a PIN could be in it).
func jsonErrorDetail(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "malformed JSON"
	case errors.As(err, &te):
		if te.Field != "" {
			return "field " + te.Field + " has the wrong type"
		}
		return "the body must be a JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short"
	}
	const unknown = "json: unknown field "
	if s := err.Error(); len(s) > len(unknown) && s[:len(unknown)] == unknown {
		f := s[len(unknown):]
		if len(f) <= 66 {
			return "unknown field " + f
		}
		return "unknown field"
	}
	return "malformed JSON"
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}
