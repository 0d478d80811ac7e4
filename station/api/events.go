package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"ssstation/station/service"
)

// ticketStore holds single-use event tickets in memory: EventSource
// cannot send Authorization, so a page trades its token for a ticket it
// puts in the URL; a ticket in a log or history is worthless a minute on.
type ticketStore struct {
	mu  sync.Mutex
	m   map[string]ticket
	now func() time.Time
}

type ticket struct {
	rec     TokenRecord
	expires time.Time
}

func newTicketStore(now func() time.Time) *ticketStore {
	return &ticketStore{m: map[string]ticket{}, now: now}
}

func (ts *ticketStore) issue(rec TokenRecord) (string, time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	for k, t := range ts.m { // drop the expired ones as we go
		if now.After(t.expires) {
			delete(ts.m, k)
		}
	}
	id := "evt_" + newID(24)
	exp := now.Add(TicketTTL)
	ts.m[id] = ticket{rec: rec, expires: exp}
	return id, exp
}

// redeem uses a ticket up (valid or not, it is gone afterwards).
func (ts *ticketStore) redeem(id string) (TokenRecord, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.m[id]
	delete(ts.m, id)
	if !ok || ts.now().After(t.expires) {
		return TokenRecord{}, false
	}
	return t.rec, true
}

type ticketBody struct {
	Ticket  string    `json:"ticket"`
	Expires time.Time `json:"expires"`
	URL     string    `json:"url"`
}

func (s *server) newTicket(w http.ResponseWriter, r *http.Request, _ *Route) {
	var empty struct{}
	if p := decodeJSON(w, r, &empty); p != nil {
		writeProblem(w, r, p)
		return
	}
	rec, ok := r.Context().Value(keyToken).(TokenRecord)
	if !ok {
		writeCode(w, r, CodeUnauthorized, "")
		return
	}
	id, exp := s.tickets.issue(rec)
	writeJSON(w, http.StatusCreated, ticketBody{Ticket: id, Expires: exp.UTC(), URL: "/v1/events?ticket=" + id})
}

// lostEvent tells a resuming client that events it missed are gone from
// the ring buffer: it should re-read the state it shows.
const lostEvent = "events.lost"

// events streams Server-Sent Events. A fresh stream starts with events
// from now on; Last-Event-ID (the header EventSource sends when it
// reconnects, or ?last_event_id=) resumes from the ring buffer.
func (s *server) events(w http.ResponseWriter, r *http.Request, _ *Route) {
	var after uint64
	resume := false
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("last_event_id")
	}
	if lastID != "" {
		n, err := strconv.ParseUint(lastID, 10, 64)
		if err != nil {
			writeCode(w, r, CodeInvalidRequest, "Last-Event-ID is an event id")
			return
		}
		after, resume = n, true
	}
	rc := http.NewResponseController(w)
	holdOpen(w, s.beat+30*time.Second)
	backlog, lost, ch, cancel := s.st.Subscribe(after)
	defer cancel()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	write := func(f string, a ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.beat + 30*time.Second))
		if _, err := fmt.Fprintf(w, f, a...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// Ids increase within a daemon run: never send one twice (backlog and
	// channel may overlap). An id at or below Last-Event-ID before anything
	// was sent means the daemon restarted and its ids began again: what
	// the client missed is gone, so say so first.
	var sent uint64
	toldLost := lost
	send := func(e service.Event) bool {
		if sent != 0 && e.ID <= sent {
			return true
		}
		if resume && sent == 0 && e.ID <= after && !toldLost {
			toldLost = true
			if !write("event: %s\ndata: {\"after\":%d,\"restarted\":true}\n\n", lostEvent, after) {
				return false
			}
		}
		sent = e.ID
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		// Data is one line of JSON (json.Compact drops any newline).
		return write("id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, compact(data))
	}
	if !write("retry: 3000\n: connected\n\n") {
		return
	}
	if resume {
		if lost {
			if !write("event: %s\ndata: {\"after\":%d}\n\n", lostEvent, after) {
				return
			}
		}
		for _, e := range backlog {
			if !send(e) {
				return
			}
		}
	}
	tick := time.NewTicker(s.beat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			if !send(e) {
				return
			}
		case <-tick.C:
			if !write(": heartbeat\n\n") {
				return
			}
		}
	}
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return []byte("{}")
	}
	return buf.Bytes()
}
