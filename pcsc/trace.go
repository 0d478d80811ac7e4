package pcsc

import (
	"fmt"
	"time"

	"ssstation/pcsc/apdu"
)

// TraceEvent is one APDU on the wire. For a sensitive command (a PIN, key
// material, a cryptogram) the data of both the command and the response is
// replaced by its length: the raw bytes never reach a tracer.
type TraceEvent struct {
	Reader    string
	Name      string
	Command   string // hex, spaced; data redacted when Sensitive
	Response  string // hex, spaced; data redacted when Sensitive
	SW        apdu.StatusWord
	Sensitive bool
	Duration  time.Duration
	Err       error
	// RawCommand and RawResponse are nil for sensitive commands; they let a
	// recorder keep a replayable transcript of everything else.
	RawCommand, RawResponse []byte
}

// Tracer receives trace events. It runs on the worker's goroutine: keep it quick.
type Tracer func(TraceEvent)

func (e TraceEvent) String() string {
	s := fmt.Sprintf("> %s", e.Command)
	if e.Name != "" {
		s = fmt.Sprintf("> %s  (%s)", e.Command, e.Name)
	}
	if e.Err != nil {
		return s + "\n< error: " + e.Err.Error()
	}
	return fmt.Sprintf("%s\n< %s  [%s] %s", s, e.Response, e.Duration.Round(time.Microsecond), e.SW.Meaning())
}

func newTraceEvent(reader string, cmd apdu.Command, raw, resp []byte, d time.Duration, err error) TraceEvent {
	ev := TraceEvent{Reader: reader, Name: cmd.Name, Sensitive: cmd.Sensitive, Duration: d, Err: err}
	if len(resp) >= 2 {
		ev.SW = apdu.StatusWord(uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1]))
	}
	if cmd.Sensitive {
		ev.Command = RedactCommand(raw)
		ev.Response = redactResponse(resp)
		return ev
	}
	ev.Command = spacedHex(raw)
	ev.Response = spacedHex(resp)
	ev.RawCommand = append([]byte(nil), raw...)
	ev.RawResponse = append([]byte(nil), resp...)
	return ev
}

// RedactCommand keeps the header and length fields and hides the data.
func RedactCommand(raw []byte) string {
	c, err := apdu.ParseCommand(raw)
	if err != nil {
		if len(raw) > 4 {
			return spacedHex(raw[:4]) + fmt.Sprintf(" [%d bytes redacted]", len(raw)-4)
		}
		return spacedHex(raw)
	}
	s := c.Header()
	if len(c.Data) > 0 {
		s += fmt.Sprintf(" %02X [%d bytes redacted]", len(c.Data)&0xFF, len(c.Data))
	}
	if c.Ne > 0 {
		s += fmt.Sprintf(" Le=%d", c.Ne)
	}
	return s
}

func redactResponse(resp []byte) string {
	if len(resp) <= 2 {
		return spacedHex(resp)
	}
	return fmt.Sprintf("[%d bytes redacted] %s", len(resp)-2, spacedHex(resp[len(resp)-2:]))
}

func spacedHex(b []byte) string { return fmt.Sprintf("% X", b) }
