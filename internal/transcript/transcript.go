// Package transcript holds recorded card sessions: what crossed the reader,
// exchange by exchange (TPDUs: on a T=0 card the 61xx answer and the GET
// RESPONSE that follows are two exchanges), with the ATR and the protocol.
// A transcript is written by Recorder (sscard record) with every PIN, key
// cryptogram and personal value masked or replaced by fictional data, and
// answered by the replay card (internal/cardsim/replay, cardsim --replay),
// so that a technician's recording of a new card batch becomes a
// regression test. The idea is go-iso7816's test/ record-and-replay.
//
// The file is JSON, one exchange per line, so that a diff shows what
// changed:
//
//	{"format": "ssstation.transcript/v1",
//	 "atr": "3B 6D 00 00 00 81 ...", "protocol": "T0",
//	 "exchanges": [
//	  {"command": "00 A4 04 00 0F 73 78 ...", "response": "61 18", "note": "SELECT SSSE"},
//	  {"command": "00 C0 00 00 18", "response": "6F 16 ... 90 00"},
//	  {"command": "00 20 00 00 03 00 00 00", "response": "90 00", "masked": "command"}
//	 ]}
package transcript

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"ssstation/pcsc/apdu"
)

// Format names the file format.
const Format = "ssstation.transcript/v1"

// Protocols.
const (
	T0 = "T0"
	T1 = "T1"
)

// What Exchange.Masked says was hidden.
const (
	// MaskedCommand: the command data (a PIN, a key cryptogram) was
	// replaced by zeros of the same length; the replay card matches the
	// header and Lc only.
	MaskedCommand = "command"
	// MaskedBoth: the response data (a card cryptogram) was zeroed too.
	MaskedBoth = "command+response"
	// MaskedResponse: only the response data was zeroed (the GET RESPONSE
	// that brings a masked command's answer on T=0); the command matches
	// as usual.
	MaskedResponse = "response"
)

// Transcript is one recorded session with one card.
type Transcript struct {
	Format    string     `json:"format"`
	Comment   string     `json:"comment,omitempty"`
	ATR       string     `json:"atr"`      // hex, spaced
	Protocol  string     `json:"protocol"` // T0 or T1
	Exchanges []Exchange `json:"exchanges"`
}

// Exchange is one command and the card's answer, as they crossed the reader.
type Exchange struct {
	Command  string `json:"command"`  // hex, spaced
	Response string `json:"response"` // hex, spaced: data then SW1 SW2
	Note     string `json:"note,omitempty"`
	Masked   string `json:"masked,omitempty"` // "", MaskedCommand or MaskedBoth
}

// Parsed is an exchange in bytes.
type Parsed struct {
	Command  apdu.Command
	Raw      []byte // the command as sent
	Response []byte // data || SW
	Masked   bool   // command data masked: match header and Lc only
	Note     string
}

// ATRBytes is the ATR in bytes.
func (t *Transcript) ATRBytes() ([]byte, error) {
	b, err := apdu.ParseHex(t.ATR)
	if err != nil {
		return nil, fmt.Errorf("transcript: atr: %w", err)
	}
	return b, nil
}

// Parse checks the transcript and returns its exchanges in bytes. Errors
// name the exchange at fault (1-based).
func (t *Transcript) Parse() ([]Parsed, error) {
	if t.Format != Format {
		return nil, fmt.Errorf("transcript: format %q, want %q", t.Format, Format)
	}
	if atr, err := t.ATRBytes(); err != nil {
		return nil, err
	} else if len(atr) < 2 || len(atr) > 33 {
		return nil, fmt.Errorf("transcript: atr: %d bytes, want 2..33", len(atr))
	}
	if t.Protocol != T0 && t.Protocol != T1 {
		return nil, fmt.Errorf("transcript: protocol %q, want %s or %s", t.Protocol, T0, T1)
	}
	out := make([]Parsed, 0, len(t.Exchanges))
	for i, e := range t.Exchanges {
		raw, err := apdu.ParseHex(e.Command)
		if err != nil {
			return nil, fmt.Errorf("transcript: exchange %d: command: %w", i+1, err)
		}
		cmd, err := apdu.ParseCommand(raw)
		if err != nil {
			return nil, fmt.Errorf("transcript: exchange %d: command: %w", i+1, err)
		}
		resp, err := apdu.ParseHex(e.Response)
		if err != nil {
			return nil, fmt.Errorf("transcript: exchange %d: response: %w", i+1, err)
		}
		if len(resp) < 2 {
			return nil, fmt.Errorf("transcript: exchange %d: response of %d bytes, want at least SW1 SW2", i+1, len(resp))
		}
		switch e.Masked {
		case "", MaskedCommand, MaskedBoth, MaskedResponse:
		default:
			return nil, fmt.Errorf("transcript: exchange %d: masked %q, want %q, %q or %q", i+1, e.Masked, MaskedCommand, MaskedBoth, MaskedResponse)
		}
		masked := e.Masked == MaskedCommand || e.Masked == MaskedBoth
		out = append(out, Parsed{Command: cmd, Raw: raw, Response: resp, Masked: masked, Note: e.Note})
	}
	return out, nil
}

// Decode reads a transcript and checks it.
func Decode(r io.Reader) (*Transcript, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var t Transcript
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	if _, err := t.Parse(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Load reads a transcript file.
func Load(path string) (*Transcript, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Encode writes the transcript as JSON with one exchange per line.
func (t *Transcript) Encode(w io.Writer) error {
	if t.Format == "" {
		t.Format = Format
	}
	var b bytes.Buffer
	head := func(k string, v any) error {
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  %q: %s,\n", k, j)
		return nil
	}
	b.WriteString("{\n")
	for _, kv := range []struct {
		k string
		v any
	}{{"format", t.Format}, {"comment", t.Comment}, {"atr", t.ATR}, {"protocol", t.Protocol}} {
		if kv.k == "comment" && t.Comment == "" {
			continue
		}
		if err := head(kv.k, kv.v); err != nil {
			return err
		}
	}
	b.WriteString("  \"exchanges\": [")
	for i, e := range t.Exchanges {
		j, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    ")
		b.Write(j)
	}
	b.WriteString("\n  ]\n}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// Save writes the transcript to path (mode 0600: even redacted, a
// transcript says which cards a station saw).
func (t *Transcript) Save(path string) error {
	var b bytes.Buffer
	if err := t.Encode(&b); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// Hex formats bytes the way transcripts hold them.
func Hex(b []byte) string { return strings.TrimSpace(fmt.Sprintf("% X", b)) }

// ErrEmpty is returned when there is nothing to save.
var ErrEmpty = errors.New("transcript: no exchange recorded")
