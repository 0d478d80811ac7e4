package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"ssstation/station/service"
)

// Codes the HTTP layer itself answers with (the card and reader codes are
// in station/service).
const (
	CodeUnauthorized        service.Code = "UNAUTHORIZED"
	CodeForbiddenRole       service.Code = "ROLE_NOT_ALLOWED"
	CodeOriginNotAllowed    service.Code = "ORIGIN_NOT_ALLOWED"
	CodeHostNotAllowed      service.Code = "HOST_NOT_ALLOWED"
	CodeInvalidJSON         service.Code = "INVALID_JSON"
	CodeInvalidRequest      service.Code = "INVALID_REQUEST"
	CodePINFormat           service.Code = "PIN_FORMAT"
	CodeBodyTooLarge        service.Code = "BODY_TOO_LARGE"
	CodeUnsupportedMedia    service.Code = "UNSUPPORTED_MEDIA_TYPE"
	CodeMethodNotAllowed    service.Code = "METHOD_NOT_ALLOWED"
	CodeIdempotencyMissing  service.Code = "IDEMPOTENCY_KEY_MISSING"
	CodeIdempotencyInFlight service.Code = "IDEMPOTENCY_KEY_IN_USE"
	CodeIdempotencyMismatch service.Code = "IDEMPOTENCY_KEY_REUSED"
	CodeTicketInvalid       service.Code = "TICKET_INVALID"
	CodeNotReady            service.Code = "NOT_READY"
)

// codeInfo is one row of the error table: HTTP status, the title we show
// and the iReadCardBas-family legacy code where the station has none of
// its own to offer (the daemon's Problem.LegacyCode wins when set).
type codeInfo struct {
	Status int
	Title  string
	Legacy int
}

// codeTable is THE table of codes to HTTP statuses (docs/api.md repeats it;
// TestCodeTableMatchesDocs keeps them in step).
var codeTable = map[service.Code]codeInfo{
	// request and caller
	CodeInvalidJSON:         {http.StatusBadRequest, "The request body is not valid JSON for this route", -14},
	CodeInvalidRequest:      {http.StatusBadRequest, "The request is not valid", -14},
	CodePINFormat:           {http.StatusBadRequest, "A PIN field is not a PIN", -33},
	CodeIdempotencyMissing:  {http.StatusBadRequest, "This route needs an Idempotency-Key header", -14},
	CodeUnauthorized:        {http.StatusUnauthorized, "A valid bearer token is needed", 0},
	CodeTicketInvalid:       {http.StatusUnauthorized, "The event ticket is unknown, used or expired", 0},
	CodeForbiddenRole:       {http.StatusForbidden, "This token's role may not use this route", 0},
	CodeOriginNotAllowed:    {http.StatusForbidden, "This page's origin is not allowed for this token", 0},
	CodeHostNotAllowed:      {http.StatusForbidden, "The Host header does not name this station", 0},
	service.CodeNotFound:    {http.StatusNotFound, "No such resource", 0},
	CodeMethodNotAllowed:    {http.StatusMethodNotAllowed, "This method is not allowed on this resource", 0},
	CodeIdempotencyInFlight: {http.StatusConflict, "A request with this Idempotency-Key is still being processed", 0},
	CodeBodyTooLarge:        {http.StatusRequestEntityTooLarge, "The request body is too large", -42},
	CodeUnsupportedMedia:    {http.StatusUnsupportedMediaType, "Requests with a body must be application/json", -14},
	CodeIdempotencyMismatch: {http.StatusUnprocessableEntity, "This Idempotency-Key was used with another request", 0},
	// readers
	service.CodeReaderNotFound:  {http.StatusNotFound, "No such reader", -11},
	service.CodeReaderBusy:      {http.StatusConflict, "The reader is busy", -11},
	service.CodeAmbiguousReader: {http.StatusConflict, "Several readers hold a card: name one", -11},
	service.CodePCSCUnavailable: {http.StatusServiceUnavailable, "The smart card service is not available", -11},
	service.CodePINPadMissing:   {http.StatusUnprocessableEntity, "This reader has no PIN pad", -13},
	service.CodePINPadEntry:     {http.StatusUnprocessableEntity, "The PIN pad entry did not complete; no try was spent", -13},
	// card
	service.CodeCardAbsent:     {http.StatusConflict, "No card in the reader", -2},
	service.CodeCardRemoved:    {http.StatusConflict, "The card was removed during the operation", -2},
	service.CodeCardUnknown:    {http.StatusUnprocessableEntity, "This is not a social security card this station knows", -1},
	service.CodeCardNotGenuine: {http.StatusUnprocessableEntity, "The card failed the genuineness check", -21},
	service.CodeCardBlocked:    {http.StatusLocked, "The card's application is blocked", 0},
	service.CodeCardExpired:    {http.StatusUnprocessableEntity, "The card has expired", 0},
	service.CodeOtherCard:      {http.StatusConflict, "Another card is in the reader than the one this operation began on", -22},
	service.CodeAlreadyActive:  {http.StatusConflict, "The card's PIN is already set", -36},
	service.CodePINIncorrect:   {http.StatusUnprocessableEntity, "The PIN is incorrect", -51},
	service.CodePINBlocked:     {http.StatusLocked, "The PIN is blocked", -52},
	service.CodePINPolicy:      {http.StatusUnprocessableEntity, "The new PIN does not meet the card's PIN rules", -33},
	service.CodeInvalidData:    {http.StatusUnprocessableEntity, "The holder or card data is not valid", -41},
	service.CodeCardRefused:    {http.StatusUnprocessableEntity, "The card refused the command", 0},
	// keys
	service.CodeNoKeyProvider:     {http.StatusServiceUnavailable, "No issuer key provider is configured", -2201},
	service.CodeKeyProviderFailed: {http.StatusBadGateway, "The issuer key provider failed", -2203},
	// operations and the station
	service.CodeInterrupted:      {http.StatusConflict, "The operation was interrupted with a card write in flight: resume it", 0},
	service.CodeCancelled:        {http.StatusConflict, "The operation was cancelled", -31},
	service.CodeCancelRefused:    {http.StatusConflict, "A card write is in flight: the operation cannot be cancelled now", 0},
	service.CodeShuttingDown:     {http.StatusServiceUnavailable, "The station is shutting down", 0},
	service.CodeAuditUnavailable: {http.StatusServiceUnavailable, "The audit trail cannot be written: no card operation may start", 0},
	CodeNotReady:                 {http.StatusServiceUnavailable, "The station is not ready", 0},
	service.CodeInternal:         {http.StatusInternalServerError, "Internal error", 0},
}

// statusOf maps a code to its HTTP status (500 for a code not in the table:
// a code added to service without a row here is a bug TestEveryServiceCodeHasARow catches).
func statusOf(c service.Code) int {
	if ci, ok := codeTable[c]; ok {
		return ci.Status
	}
	return http.StatusInternalServerError
}

// problemBody is the RFC 9457 document plus our extension members.
type problemBody struct {
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Status      int          `json:"status"`
	Detail      string       `json:"detail,omitempty"`
	Instance    string       `json:"instance,omitempty"`
	Code        service.Code `json:"code"`
	LegacyCode  int          `json:"legacy_code"`
	SW          string       `json:"sw,omitempty"`
	TriesLeft   *int         `json:"tries_left,omitempty"`
	ReaderID    string       `json:"reader_id,omitempty"`
	Retryable   bool         `json:"retryable"`
	OperationID string       `json:"operation_id,omitempty"`
	RequestID   string       `json:"request_id,omitempty"`
}

// problemTypeBase is where the types point: the error table in docs/api.md.
const problemTypeBase = "https://ssstation.invalid/problems/"

func newProblem(code service.Code, detail string) *service.Problem {
	ci := codeTable[code]
	return &service.Problem{Code: code, Title: ci.Title, Detail: detail}
}

// renderProblem builds the body and headers for p.
func renderProblem(r *http.Request, p *service.Problem, opID string) (int, http.Header, []byte) {
	ci, known := codeTable[p.Code]
	status := ci.Status
	if !known {
		status = http.StatusInternalServerError
	}
	title := p.Title
	if title == "" {
		title = ci.Title
	}
	legacy := p.LegacyCode
	if legacy == 0 {
		legacy = ci.Legacy
	}
	b := problemBody{
		Type:        problemTypeBase + string(p.Code),
		Title:       title,
		Status:      status,
		Detail:      p.Detail,
		Instance:    r.URL.Path,
		Code:        p.Code,
		LegacyCode:  legacy,
		SW:          p.SW,
		TriesLeft:   p.TriesLeft,
		ReaderID:    p.ReaderID,
		Retryable:   p.Retryable,
		OperationID: opID,
		RequestID:   requestIDFrom(r.Context()),
	}
	body, _ := json.Marshal(b)
	h := http.Header{}
	h.Set("Content-Type", "application/problem+json; charset=utf-8")
	switch p.Code {
	case CodeUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="stationd"`)
	case CodeTicketInvalid:
		h.Set("WWW-Authenticate", `Bearer realm="stationd", error="invalid_token"`)
	}
	if p.RetryAfter > 0 {
		secs := int((p.RetryAfter + 999999999) / 1e9)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	return status, h, body
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *service.Problem) {
	status, h, body := renderProblem(r, p, "")
	writeRaw(w, status, h, body)
}

func writeCode(w http.ResponseWriter, r *http.Request, code service.Code, detail string) {
	writeProblem(w, r, newProblem(code, detail))
}

// problemFromError turns an error from the Station into a Problem in our
// own words: an error that is not a *Problem never shows its text.
func problemFromError(err error) *service.Problem {
	if p, ok := service.AsProblem(err); ok {
		return p
	}
	return newProblem(service.CodeInternal, "the station failed to answer; see its log by request id")
}

func writeRaw(w http.ResponseWriter, status int, h http.Header, body []byte) {
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"code":"INTERNAL"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
