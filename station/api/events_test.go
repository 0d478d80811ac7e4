package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ssstation/station/service"
)

type sseEvent struct {
	id, typ, data, comment string
}

type sseStream struct {
	res  *http.Response
	r    *bufio.Reader
	stop context.CancelFunc
}

func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	var e sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if e != (sseEvent{}) {
				return e
			}
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			e.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		case strings.HasPrefix(line, ": "):
			e.comment = line[2:]
		}
	}
}

// nextEvent skips comments (connected, heartbeats).
func (s *sseStream) nextEvent(t *testing.T) sseEvent {
	t.Helper()
	for {
		if e := s.next(t); e.typ != "" {
			return e
		}
	}
}

func open(t *testing.T, base string, path string, hdr map[string]string) (*sseStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	r.Host = testHost
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		defer cancel()
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		validateResponse(t, r, res.StatusCode, res.Header, body)
		return nil, res
	}
	validateResponse(t, r, res.StatusCode, res.Header, nil)
	s := &sseStream{res: res, r: bufio.NewReader(res.Body), stop: func() { cancel(); res.Body.Close() }}
	t.Cleanup(s.stop)
	return s, res
}

func ticketFor(t *testing.T, hs *harness, role service.Role) string {
	t.Helper()
	rec := hs.do(req{method: "POST", path: "/v1/event-tickets", role: role, body: `{}`, origin: goodOrigin})
	if rec.Code != 201 {
		t.Fatalf("ticket: %d %s", rec.Code, rec.Body)
	}
	var tb ticketBody
	if err := json.Unmarshal(rec.Body.Bytes(), &tb); err != nil {
		t.Fatal(err)
	}
	if !tb.Expires.Equal(hs.clock.Now().Add(TicketTTL)) || tb.URL != "/v1/events?ticket="+tb.Ticket {
		t.Fatalf("ticket %+v", tb)
	}
	return tb.Ticket
}

// TestEventsWithTickets: a ticket opens one stream, once; it expires
// after 60 s; events carry increasing ids and their types; heartbeats
// keep the stream alive; a fresh stream starts from now.
func TestEventsWithTickets(t *testing.T) {
	hs := newHarness(t)
	srv := httptest.NewServer(hs.h)
	t.Cleanup(srv.Close)
	hs.st.Emit(service.EventCardInserted, map[string]string{"reader_id": "r1"}) // before the stream: not replayed

	tk := ticketFor(t, hs, service.RoleCounter)
	s, res := open(t, srv.URL, "/v1/events?ticket="+tk, map[string]string{"Origin": goodOrigin})
	if s == nil || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") || res.Header.Get("Access-Control-Allow-Origin") != goodOrigin {
		t.Fatalf("stream: %v", res.Header)
	}
	eventually(t, "subscribed", func() bool { return hs.st.Subscribers() == 1 })
	hs.st.Emit(service.EventCardRemoved, map[string]string{"reader_id": "r1"})
	hs.st.Emit(service.EventReaderAdded, map[string]string{"reader_id": "r4"})
	e1, e2 := s.nextEvent(t), s.nextEvent(t)
	if e1.id != "2" || e1.typ != "card.removed" || e1.data != `{"reader_id":"r1"}` || e2.id != "3" || e2.typ != "reader.added" {
		t.Fatalf("events %+v %+v", e1, e2)
	}
	for e := s.next(t); e.comment != "heartbeat"; e = s.next(t) {
	}
	s.stop()
	eventually(t, "unsubscribed", func() bool { return hs.st.Subscribers() == 0 })

	// single use
	if s, res := open(t, srv.URL, "/v1/events?ticket="+tk, nil); s != nil || res.StatusCode != 401 {
		t.Fatal("ticket used twice")
	}
	// 60 s
	tk = ticketFor(t, hs, service.RoleBank)
	hs.clock.Add(TicketTTL + time.Second)
	if s, res := open(t, srv.URL, "/v1/events?ticket="+tk, nil); s != nil || res.StatusCode != 401 {
		t.Fatal("expired ticket accepted")
	}
	// a ticket keeps its token's origins
	tk = ticketFor(t, hs, service.RoleBank)
	if s, res := open(t, srv.URL, "/v1/events?ticket="+tk, map[string]string{"Origin": badOrigin}); s != nil || res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("ticket used from a foreign origin")
	}
	// desktop programs may use their bearer token
	if s, _ := open(t, srv.URL, "/v1/events", map[string]string{"Authorization": "Bearer " + hs.tokens[service.RoleTechnician]}); s == nil {
		t.Fatal("bearer stream refused")
	}
	if s, res := open(t, srv.URL, "/v1/events?ticket=evt_forged", nil); s != nil || res.StatusCode != 401 {
		t.Fatal("forged ticket accepted")
	}
	if !strings.Contains(hs.logs.String(), `"route":"/v1/events"`) || strings.Contains(hs.logs.String(), "evt_") {
		t.Fatal("ticket in the log, or no log line for the stream")
	}
}

// TestEventsResume: Last-Event-ID resumes from the ring buffer; a resume
// older than the buffer first says events.lost.
func TestEventsResume(t *testing.T) {
	hs := newHarness(t)
	srv := httptest.NewServer(hs.h)
	t.Cleanup(srv.Close)
	for i := 0; i < 3; i++ {
		hs.st.Emit(service.EventCardInserted, map[string]int{"n": i})
	}
	s, _ := open(t, srv.URL, "/v1/events?ticket="+ticketFor(t, hs, service.RoleCounter), map[string]string{"Last-Event-ID": "1"})
	if e := s.nextEvent(t); e.id != "2" {
		t.Fatalf("resume gave %+v", e)
	}
	if e := s.nextEvent(t); e.id != "3" {
		t.Fatalf("resume gave %+v", e)
	}
	hs.st.Emit(service.EventPCSCDown, nil)
	if e := s.nextEvent(t); e.id != "4" || e.typ != "pcsc.down" {
		t.Fatalf("live after resume %+v", e)
	}
	for i := 0; i < 6; i++ {
		hs.st.Emit(service.EventOperationProgress, map[string]int{"n": i})
	}
	s2, _ := open(t, srv.URL, "/v1/events?last_event_id=2&ticket="+ticketFor(t, hs, service.RoleCounter), nil)
	if e := s2.nextEvent(t); e.typ != lostEvent {
		t.Fatalf("lost events not told: %+v", e)
	}
	if e := s2.nextEvent(t); e.id != "7" {
		t.Fatalf("oldest held event %+v", e)
	}
	// a daemon restart begins its ids again: a resume from the old run is told
	s3, _ := open(t, srv.URL, "/v1/events?ticket="+ticketFor(t, hs, service.RoleCounter), map[string]string{"Last-Event-ID": "900"})
	eventually(t, "subscribed", func() bool { return hs.st.Subscribers() == 3 })
	hs.st.Emit(service.EventPCSCUp, nil)
	if e := s3.nextEvent(t); e.typ != lostEvent || !strings.Contains(e.data, `"restarted":true`) {
		t.Fatalf("restart not told: %+v", e)
	}
	if e := s3.nextEvent(t); e.id != "11" || e.typ != "pcsc.up" {
		t.Fatalf("after restart %+v", e)
	}
	if _, res := open(t, srv.URL, "/v1/events?ticket="+ticketFor(t, hs, service.RoleCounter), map[string]string{"Last-Event-ID": "x"}); res.StatusCode != 400 {
		t.Fatalf("bad Last-Event-ID: %d", res.StatusCode)
	}
}
