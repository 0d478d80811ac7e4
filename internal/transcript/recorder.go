package transcript

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

// Recorder collects the exchanges of one card connection from the pcsc
// trace hook: give Trace as the connection's only Tracer, and run the
// station's operations on Session(card). Transcript then returns the
// session with its personal data replaced by fictional data (Redact).
//
// What never reaches the recorder in clear: the data of the commands the
// host marks sensitive (VERIFY, CHANGE PIN 80 5E, 84 24, EXTERNAL and
// INTERNAL AUTHENTICATE): the trace hook hands over their header, lengths
// and status word only, and the transcript holds zeros of the same length.
// Reads of personal data (READ RECORD of EF06, which the host also marks
// sensitive) do reach it, through Session: a transcript that replays needs
// the records, and Redact replaces every personal value before anything is
// written. Keep the Recorder the connection's only tracer.
type Recorder struct {
	mu sync.Mutex
	ex []Exchange
}

// NewRecorder makes an empty recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Trace is a pcsc.Tracer: one exchange per event (TPDU level: a GET
// RESPONSE is its own exchange).
func (r *Recorder) Trace(ev pcsc.TraceEvent) {
	if ev.Err != nil {
		return
	}
	e := Exchange{Note: ev.Name}
	if ev.RawCommand != nil {
		e.Command, e.Response = Hex(ev.RawCommand), Hex(ev.RawResponse)
	} else {
		cmd, resp, masked, err := unredact(ev.Command, ev.Response)
		if err != nil {
			return
		}
		e.Command, e.Response, e.Masked = Hex(cmd), Hex(resp), masked
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.ex); n > 0 && e.Masked == "" && ev.RawCommand != nil && isGetResponse(ev.RawCommand) {
		// On T=0 a masked command's answer (a card cryptogram) comes by
		// 61xx and GET RESPONSE, which the host does not mark: mask it too.
		if prev := r.ex[n-1]; prev.Masked != "" && strings.HasPrefix(prev.Response, "61 ") && len(ev.RawResponse) > 2 {
			resp := make([]byte, len(ev.RawResponse))
			copy(resp[len(resp)-2:], ev.RawResponse[len(ev.RawResponse)-2:])
			e.Response, e.Masked = Hex(resp), MaskedResponse
		}
	}
	r.ex = append(r.ex, e)
}

func isGetResponse(raw []byte) bool {
	return len(raw) >= 4 && raw[1] == 0xC0 && raw[2] == 0x00 && raw[3] == 0x00
}

// Len is the number of exchanges recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ex)
}

// Session is what cardapp runs on (cardapp.Session).
type Session interface {
	Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error)
	ATR() []byte
}

// Session wraps the recorded connection: READ RECORD and READ BINARY go
// out unmarked, so that their answers reach Trace (and only Trace, the
// connection's one tracer) to be redacted. PIN and key commands stay
// sensitive. The wrapper keeps ResetAtEnd of the session it wraps.
func (r *Recorder) Session(s Session) Session { return &session{s} }

type session struct{ Session }

func (s *session) Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	if cmd.CLA == 0x00 && (cmd.INS == 0xB2 || cmd.INS == 0xB0) {
		cmd.Sensitive = false
	}
	return s.Session.Transmit(ctx, cmd)
}

// ResetAtEnd passes the host's request on (pcsc.Card.ResetAtEnd).
func (s *session) ResetAtEnd() {
	if r, ok := s.Session.(interface{ ResetAtEnd() }); ok {
		r.ResetAtEnd()
	}
}

// Transcript returns the recorded session, redacted with f (nil: fresh
// fictional data, docs/cardsim.md "Replay").
func (r *Recorder) Transcript(atr []byte, protocol pcsc.Protocol, f *Fictional) (*Transcript, error) {
	r.mu.Lock()
	ex := append([]Exchange(nil), r.ex...)
	r.mu.Unlock()
	if len(ex) == 0 {
		return nil, ErrEmpty
	}
	t := &Transcript{Format: Format, ATR: Hex(atr), Protocol: T1, Exchanges: ex}
	if protocol == pcsc.ProtocolT0 {
		t.Protocol = T0
	}
	if err := Redact(t, f); err != nil {
		return nil, err
	}
	return t, nil
}

var (
	redactedData = regexp.MustCompile(`^([0-9A-F]{2}) \[(\d+) bytes redacted\]$`)
	redactedResp = regexp.MustCompile(`^\[(\d+) bytes redacted\] ([0-9A-F]{2} [0-9A-F]{2})$`)
)

// unredact rebuilds a sensitive exchange from the trace's redacted text
// (pcsc.RedactCommand): the header, Lc and Le kept, the data zeros.
func unredact(cmdText, respText string) (cmd, resp []byte, masked string, err error) {
	if len(cmdText) < 11 {
		return nil, nil, "", fmt.Errorf("transcript: redacted command %q", cmdText)
	}
	hdr, err := apdu.ParseHex(cmdText[:11])
	if err != nil {
		return nil, nil, "", err
	}
	c := apdu.Command{CLA: hdr[0], INS: hdr[1], P1: hdr[2], P2: hdr[3]}
	rest := strings.TrimSpace(cmdText[11:])
	if i := strings.Index(rest, "Le="); i >= 0 {
		if c.Ne, err = strconv.Atoi(strings.TrimSpace(rest[i+3:])); err != nil {
			return nil, nil, "", err
		}
		rest = strings.TrimSpace(rest[:i])
	}
	if rest != "" {
		m := redactedData.FindStringSubmatch(rest)
		if m == nil {
			return nil, nil, "", fmt.Errorf("transcript: redacted command %q", cmdText)
		}
		n, _ := strconv.Atoi(m[2])
		c.Data = make([]byte, n)
	}
	if cmd, err = c.Bytes(); err != nil {
		return nil, nil, "", err
	}
	masked = MaskedCommand
	if m := redactedResp.FindStringSubmatch(respText); m != nil {
		n, _ := strconv.Atoi(m[1])
		sw, _ := apdu.ParseHex(m[2])
		resp = append(make([]byte, n), sw...)
		masked = MaskedBoth
	} else if resp, err = apdu.ParseHex(respText); err != nil {
		return nil, nil, "", err
	}
	return cmd, resp, masked, nil
}
