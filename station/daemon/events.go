package daemon

import (
	"encoding/json"
	"sync"
	"time"

	"ssstation/station/service"
)

// hub numbers events, keeps the last ones in a ring buffer for
// Last-Event-ID resume, and fans them out to subscribers. A subscriber too
// slow to keep up loses its channel (closed) rather than stalling the
// daemon: it reconnects with Last-Event-ID and resumes from the ring.
type hub struct {
	mu     sync.Mutex
	next   uint64
	ring   []service.Event
	start  int // index of the oldest event in ring once full
	full   bool
	subs   map[int]chan service.Event
	nextID int
}

func newHub(size int) *hub {
	if size <= 0 {
		size = 1024
	}
	return &hub{next: 1, ring: make([]service.Event, 0, size), subs: map[int]chan service.Event{}}
}

func (h *hub) publish(t service.EventType, data any) service.Event {
	raw, err := json.Marshal(data)
	if err != nil {
		raw = []byte("{}")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := service.Event{ID: h.next, Type: t, Time: time.Now().UTC(), Data: raw}
	h.next++
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, ev)
	} else {
		h.ring[h.start] = ev
		h.start = (h.start + 1) % len(h.ring)
		h.full = true
	}
	for id, ch := range h.subs {
		select {
		case ch <- ev:
		default:
			close(ch)
			delete(h.subs, id)
		}
	}
	return ev
}

// ordered returns the ring's events oldest first.
func (h *hub) ordered() []service.Event {
	if !h.full {
		return append([]service.Event(nil), h.ring...)
	}
	out := make([]service.Event, 0, len(h.ring))
	out = append(out, h.ring[h.start:]...)
	return append(out, h.ring[:h.start]...)
}

func (h *hub) subscribe(afterID uint64) ([]service.Event, bool, <-chan service.Event, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.ordered()
	var backlog []service.Event
	for _, ev := range all {
		if ev.ID > afterID {
			backlog = append(backlog, ev)
		}
	}
	lost := false
	if afterID > 0 && afterID+1 < h.next {
		// Events after afterID were published; lost if the oldest held one
		// is later than the first wanted.
		lost = len(all) == 0 || all[0].ID > afterID+1
	}
	ch := make(chan service.Event, 256)
	id := h.nextID
	h.nextID++
	h.subs[id] = ch
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if c, ok := h.subs[id]; ok {
				close(c)
				delete(h.subs, id)
			}
		})
	}
	return backlog, lost, ch, cancel
}
