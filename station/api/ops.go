package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"ssstation/station/service"
)

// preferWait reads RFC 7240 "Prefer: wait=N" (seconds, capped at MaxWait).
// Without it the API answers at once (202 unless already finished).
func preferWait(r *http.Request) (time.Duration, bool) {
	for _, v := range r.Header.Values("Prefer") {
		for _, pref := range strings.Split(v, ",") {
			pref = strings.TrimSpace(strings.SplitN(pref, ";", 2)[0])
			name, val, ok := strings.Cut(pref, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 0 {
				continue
			}
			d := time.Duration(n) * time.Second
			if d > MaxWait {
				d = MaxWait
			}
			return d, true
		}
	}
	return 0, false
}

// waitFor waits up to d for the operation to end (or the client to go).
func (s *server) waitFor(ctx context.Context, w http.ResponseWriter, op *service.Operation, d time.Duration) *service.Operation {
	if op.State.Final() || d <= 0 {
		return op
	}
	holdOpen(w, d+10*time.Second)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if w, err := s.st.Wait(ctx, op.ID); w != nil {
		return w
	} else if err != nil {
		s.log.Debug().Str("op", op.ID).Msg("wait ended without a snapshot")
	}
	return op
}

// opAnswer is how a POST that started an operation answers: 200 and the
// operation when it is done, problem+json when it failed, 202 and
// Location while it runs.
func opAnswer(r *http.Request, op *service.Operation, pref string) (int, http.Header, []byte) {
	h := http.Header{}
	if pref != "" {
		h.Set("Preference-Applied", pref)
	}
	switch {
	case op.State == service.StateDone:
		body, _ := json.Marshal(op)
		h.Set("Content-Type", "application/json; charset=utf-8")
		return http.StatusOK, h, body
	case op.State.Final():
		p := op.Problem
		if p == nil {
			p = newProblem(stateCode(op.State), "")
		}
		status, ph, body := renderProblem(r, p, op.ID)
		for k, v := range ph {
			h[k] = v
		}
		return status, h, body
	default:
		body, _ := json.Marshal(op)
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Location", "/v1/operations/"+op.ID)
		return http.StatusAccepted, h, body
	}
}

func stateCode(st service.State) service.Code {
	switch st {
	case service.StateCancelled:
		return service.CodeCancelled
	case service.StateInterrupted:
		return service.CodeInterrupted
	}
	return service.CodeInternal
}

// cardOp is every card route: decode, check, (idempotency), submit, wait.
func (s *server) cardOp(w http.ResponseWriter, r *http.Request, rt *Route) {
	caller := callerFrom(r.Context())
	// The key is checked first: a write without one is refused before its
	// body is even read.
	var key string
	if rt.Idempotent {
		h := r.Header.Get("Idempotency-Key")
		if h == "" {
			writeCode(w, r, CodeIdempotencyMissing, "send a fresh Idempotency-Key (e.g. a UUID) and reuse it for retries")
			return
		}
		var ok bool
		if key, ok = parseIdemKey(h); !ok {
			writeCode(w, r, CodeInvalidRequest, "the Idempotency-Key is 1 to 255 printable characters")
			return
		}
	}
	body := rt.body()
	if p := decodeJSON(w, r, body); p != nil {
		writeProblem(w, r, p)
		return
	}
	req, p := body.request(rt.Kind)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	if id := chi.URLParam(r, "id"); id != "" {
		if checkReader(id) != nil {
			writeCode(w, r, service.CodeReaderNotFound, "")
			return
		}
		req.ReaderID = id
	}
	req.Caller = *caller
	req.IdempotencyKey = key

	var scope []byte
	if rt.Idempotent {
		scope = scopeKey(caller.TokenName, key)
		out, rec, err := s.idem.begin(scope, fingerprint(rt.Pattern, req))
		if err != nil {
			s.log.Error().Err(err).Msg("idempotency store")
			writeCode(w, r, service.CodeAuditUnavailable, "the station's store cannot be written")
			return
		}
		switch out {
		case idemReplay:
			w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(w, rec.Status, rec.Header, rec.Body)
			return
		case idemBusy:
			writeCode(w, r, CodeIdempotencyInFlight, "retry when the first request has been answered")
			return
		case idemMismatch:
			writeCode(w, r, CodeIdempotencyMismatch, "use a new key for a new request")
			return
		case idemOrphaned:
			s.answerOrphan(w, r, scope, rec)
			return
		}
	}

	wait, hasPref := preferWait(r)
	pref := ""
	if hasPref {
		pref = "wait=" + strconv.Itoa(int(wait/time.Second))
	}
	op, err := s.st.Submit(r.Context(), req)
	if err != nil {
		if scope != nil {
			// Refused before queueing: nothing reached a card.
			if rerr := s.idem.release(scope); rerr != nil {
				s.log.Error().Err(rerr).Msg("idempotency release")
			}
		}
		writeProblem(w, r, problemFromError(err))
		return
	}
	if scope != nil {
		if err := s.idem.setOp(scope, op.ID); err != nil {
			s.log.Error().Err(err).Msg("idempotency store")
		}
	}
	op = s.waitFor(r.Context(), w, op, wait)
	if err := s.owners.put(op.ID, caller.TokenName, !op.State.Final()); err != nil {
		s.log.Error().Err(err).Msg("operation owners store")
	}
	status, h, b := opAnswer(r, op, pref)
	if scope != nil {
		if err := s.idem.finish(scope, status, h, storedBody(rt.Kind, status, b)); err != nil {
			s.log.Error().Err(err).Msg("idempotency store")
		}
	}
	// The whole answer leaves now (a known length, flushed): the
	// request's log line and metrics are written after it.
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	writeRaw(w, status, h, b)
	_ = http.NewResponseController(w).Flush()
}

// storedBody keeps raw APDU results out of the store (a READ RECORD
// answer may hold holder data); a replay then shows the operation
// without its result, which GET /v1/operations/{id} still has.
func storedBody(k service.Kind, status int, b []byte) []byte {
	if k != service.KindAPDU || status != http.StatusOK {
		return b
	}
	var op service.Operation
	if json.Unmarshal(b, &op) != nil {
		return b
	}
	op.Result = nil
	out, _ := json.Marshal(op)
	return out
}

// answerOrphan: the key was in flight when an earlier run of the daemon
// stopped. With the operation id known, answer from the operation (its
// journal makes it resumable); without it nobody knows whether the
// station began, so the caller must look before acting again.
func (s *server) answerOrphan(w http.ResponseWriter, r *http.Request, scope []byte, rec *idemRecord) {
	if rec.OpID == "" {
		writeCode(w, r, service.CodeInterrupted, "a request with this key was cut short by a restart; check the card and the audit trail before trying again with a new key")
		return
	}
	op, err := s.st.Operation(r.Context(), rec.OpID)
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	status, h, b := opAnswer(r, op, "")
	if op.State.Final() {
		if err := s.idem.finish(scope, status, h, b); err != nil {
			s.log.Error().Err(err).Msg("idempotency store")
		}
	}
	w.Header().Set("Idempotent-Replayed", "true")
	writeRaw(w, status, h, b)
}

// mayView: the token that started the operation, or an admin. Anyone
// else is told it does not exist.
func (s *server) mayView(r *http.Request, opID string) bool {
	c := callerFrom(r.Context())
	return c.Role == service.RoleAdmin || (c.TokenName != "" && s.owners.owner(opID) == c.TokenName)
}

func (s *server) operation(w http.ResponseWriter, r *http.Request, _ *Route) {
	id := chi.URLParam(r, "id")
	if !s.mayView(r, id) {
		writeCode(w, r, service.CodeNotFound, "no operation with this id for this token")
		return
	}
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 {
			writeCode(w, r, CodeInvalidRequest, "wait is a number of seconds")
			return
		}
		wait = min(time.Duration(n)*time.Second, MaxWait)
	}
	op, err := s.st.Operation(r.Context(), id)
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	op = s.waitFor(r.Context(), w, op, wait)
	writeJSON(w, http.StatusOK, op)
}

func (s *server) cancelOperation(w http.ResponseWriter, r *http.Request, _ *Route) {
	id := chi.URLParam(r, "id")
	if !s.mayView(r, id) {
		writeCode(w, r, service.CodeNotFound, "no operation with this id for this token")
		return
	}
	op, err := s.st.Cancel(r.Context(), id)
	if errors.Is(err, service.ErrWriteInFlight) {
		writeCode(w, r, service.CodeCancelRefused, "")
		return
	}
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	writeJSON(w, http.StatusOK, op)
}

type healthBody struct {
	OK            bool   `json:"ok"`
	Version       string `json:"version"`
	OriginAllowed bool   `json:"origin_allowed"`
	// TestKeys is shown only when true: the station runs with the public
	// test keys.
	TestKeys bool `json:"test_keys,omitempty"`
}

// health tells a page "service here" and whether its origin is allowed
// for some token, nothing more.
func (s *server) health(w http.ResponseWriter, r *http.Request, _ *Route) {
	// No Origin: not a cross-origin browser request (a same-origin GET, a
	// desktop program), so nothing stands in its way.
	o := r.Header.Get("Origin")
	allowed := o == "" || s.tokens.anyOrigins[o] || s.ownOrigin(o)
	writeJSON(w, http.StatusOK, healthBody{OK: true, Version: s.version, OriginAllowed: allowed, TestKeys: s.testKeys})
}

func (s *server) ready(w http.ResponseWriter, r *http.Request, _ *Route) {
	if err := s.st.Ready(r.Context()); err != nil {
		p, ok := service.AsProblem(err)
		if !ok {
			p = newProblem(CodeNotReady, "")
		}
		writeProblem(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (s *server) readers(w http.ResponseWriter, r *http.Request, _ *Route) {
	rs, err := s.st.Readers(r.Context())
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	w.Header().Set("ETag", `W/"`+strconv.FormatUint(rs.Version, 10)+`"`)
	writeJSON(w, http.StatusOK, rs)
}

func (s *server) reader(w http.ResponseWriter, r *http.Request, _ *Route) {
	id := chi.URLParam(r, "id")
	if checkReader(id) != nil {
		writeCode(w, r, service.CodeReaderNotFound, "")
		return
	}
	rd, err := s.st.Reader(r.Context(), id)
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	writeJSON(w, http.StatusOK, rd)
}

type auditBody struct {
	Records []json.RawMessage `json:"records"`
}

// parseTime takes RFC 3339 or a day (YYYY-MM-DD, local midnight).
func parseTime(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02", v, time.Local); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// auditVerifyChain walks the audit trail's hash chain for the console.
func (s *server) auditVerifyChain(w http.ResponseWriter, r *http.Request, _ *Route) {
	if s.auditVerify == nil {
		writeCode(w, r, service.CodeAuditUnavailable, "this station has no audit reader configured")
		return
	}
	c, err := s.auditVerify(r.Context())
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *server) auditList(w http.ResponseWriter, r *http.Request, _ *Route) {
	if s.audit == nil {
		writeCode(w, r, service.CodeAuditUnavailable, "this station has no audit reader configured")
		return
	}
	q := r.URL.Query()
	from, ok1 := parseTime(q.Get("from"))
	to, ok2 := parseTime(q.Get("to"))
	if !ok1 || !ok2 {
		writeCode(w, r, CodeInvalidRequest, "from and to are RFC 3339 times or YYYY-MM-DD days")
		return
	}
	limit := 1000
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > 10000 {
			writeCode(w, r, CodeInvalidRequest, "limit is 1 to 10000")
			return
		}
		limit = n
	}
	card := q.Get("card")
	if card != "" && !readerIDRe.MatchString(card) {
		writeCode(w, r, CodeInvalidRequest, "card is the card identification code")
		return
	}
	recs, err := s.audit(r.Context(), AuditFilter{Card: card, From: from, To: to, Limit: limit})
	if err != nil {
		writeProblem(w, r, problemFromError(err))
		return
	}
	if recs == nil {
		recs = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, auditBody{Records: recs})
}

func (s *server) openAPI(w http.ResponseWriter, _ *http.Request, _ *Route) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(s.openapi)
}

// holdOpen lets a long poll or an event stream outlive the server's
// write timeout by extending its write deadline by d (TestServerTimeouts…
// proves it). Recorders in tests do not support deadlines; that is fine.
func holdOpen(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
