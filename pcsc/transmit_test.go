package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"ssstation/pcsc/apdu"
)

// script is a scripted card: it checks each command it receives against
// the expected hex and answers with the given hex.
type script struct {
	t     *testing.T
	steps [][2]string // command hex, response hex
	n     int
	trace []TraceEvent
}

func (s *script) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	s.trace = append(s.trace, newTraceEvent("fake", cmd, raw, nil, 0, nil))
	if s.n >= len(s.steps) {
		s.t.Fatalf("unexpected command %X after the script ended", raw)
	}
	st := s.steps[s.n]
	s.n++
	if got := fmt.Sprintf("%X", raw); got != st[0] {
		s.t.Fatalf("command %d = %s, want %s", s.n, got, st[0])
	}
	return apdu.ParseHex(st[1])
}

func (s *script) done() {
	if s.n != len(s.steps) {
		s.t.Fatalf("only %d of %d scripted commands were sent", s.n, len(s.steps))
	}
}

func TestTransmitGetResponse(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"00B2010400", "6104"},
		{"00C0000004", "010203046102"},
		{"00C0000002", "05069000"},
	}}
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xB2, P1: 1, P2: 4, Ne: 256}, 255)
	if err != nil {
		t.Fatal(err)
	}
	s.done()
	if !resp.SW.OK() || !bytes.Equal(resp.Data, []byte{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("resp = %X %s", resp.Data, resp.SW)
	}
}

func TestTransmitGetResponseKeepsChannel(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"8388000002AABB", "6108"},
		{"03C0000008", "11223344556677889000"},
	}}
	resp, err := transmit(context.Background(), s, apdu.Command{CLA: 0x83, INS: 0x88, Data: []byte{0xAA, 0xBB}}, 255)
	if err != nil || len(resp.Data) != 8 {
		t.Fatalf("%v %X", err, resp.Data)
	}
	s.done()
}

func TestTransmitWrongLe(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"0084000000", "6C08"},
		{"0084000008", "01020304050607089000"},
	}}
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0x84, Ne: 256}, 255)
	if err != nil || len(resp.Data) != 8 || !resp.SW.OK() {
		t.Fatalf("%v %X %s", err, resp.Data, resp.SW)
	}
	s.done()
}

func TestTransmitWrongLeCap(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"0084000000", "6C08"},
		{"0084000008", "6C07"},
		{"0084000007", "6C06"},
	}}
	_, err := transmit(context.Background(), s, apdu.Command{INS: 0x84, Ne: 256}, 255)
	if !errors.Is(err, ErrCardMisbehaves) {
		t.Fatalf("err = %v", err)
	}
}

// endless answers 61 01 forever.
type endless struct{ n int }

func (e *endless) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	e.n++
	return []byte{0xAA, 0x61, 0x01}, nil
}

func TestTransmitGetResponseCap(t *testing.T) {
	e := &endless{}
	_, err := transmit(context.Background(), e, apdu.Command{INS: 0xB0, Ne: 1}, 255)
	if !errors.Is(err, ErrCardMisbehaves) {
		t.Fatalf("err = %v", err)
	}
	if e.n != MaxGetResponses+1 {
		t.Fatalf("%d exchanges, want %d", e.n, MaxGetResponses+1)
	}
}

// flood answers 61 00 with 4 KiB of data each time, to hit the size cap.
type flood struct{ n int }

func (f *flood) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	f.n++
	return append(make([]byte, 8192), 0x61, 0x00), nil
}

func TestTransmitSizeCap(t *testing.T) {
	f := &flood{}
	_, err := transmit(context.Background(), f, apdu.Command{INS: 0xB0, Ne: 1}, 255)
	if !errors.Is(err, ErrCardMisbehaves) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("err = %v", err)
	}
	if f.n*8192 > MaxResponseSize+8192*2 {
		t.Fatalf("read %d bytes before stopping", f.n*8192)
	}
}

func TestTransmitChaining(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	s := &script{t: t, steps: [][2]string{
		{"10DC0104FF" + strings.Repeat("5A", 255), "9000"},
		{"00DC01042D" + strings.Repeat("5A", 45), "9000"},
	}}
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, 255)
	if err != nil || !resp.SW.OK() {
		t.Fatalf("%v %s", err, resp.SW)
	}
	s.done()
}

func TestTransmitChainingStopsOnError(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	s := &script{t: t, steps: [][2]string{
		{"10DC0104FF" + strings.Repeat("5A", 255), "6A80"},
	}}
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, 255)
	if err != nil || resp.SW != apdu.SWWrongData {
		t.Fatalf("%v %s", err, resp.SW)
	}
	s.done()
}

func TestTransmitExtendedWhenReaderAllows(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	s := &script{t: t, steps: [][2]string{
		{"00DC010400012C" + strings.Repeat("5A", 300), "9000"},
	}}
	if _, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, 1024); err != nil {
		t.Fatal(err)
	}
	s.done()
}

func TestTransmitContextCancelledBetweenAPDUs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cancelAfterFirst{cancel: cancel}
	_, err := transmit(ctx, c, apdu.Command{INS: 0xB0, Ne: 1}, 255)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if c.n != 1 {
		t.Fatalf("%d exchanges after cancel", c.n)
	}
}

type cancelAfterFirst struct {
	cancel func()
	n      int
}

func (c *cancelAfterFirst) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "transmit", Kind: KindCancelled, Err: err}
	}
	c.n++
	c.cancel()
	return []byte{0x61, 0x02}, nil
}

func TestSensitiveTraceIsRedacted(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"0020000003123456", "6108"},
		{"00C0000008", "A1A2A3A4A5A6A7A89000"},
	}}
	_, err := transmit(context.Background(), s, apdu.Command{INS: 0x20, Data: []byte{0x12, 0x34, 0x56}, Sensitive: true}, 255)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range s.trace {
		if strings.Contains(strings.ReplaceAll(ev.Command, " ", ""), "123456") || ev.RawCommand != nil {
			t.Fatalf("trace leaks the PIN: %+v", ev)
		}
	}
	ev := newTraceEvent("r", apdu.Command{INS: 0xC0, Sensitive: true}, []byte{0, 0xC0, 0, 0, 8}, []byte{0xA1, 0xA2, 0x90, 0x00}, 0, nil)
	if strings.Contains(ev.Response, "A1") || !strings.Contains(ev.Response, "90 00") {
		t.Fatalf("response not redacted: %q", ev.Response)
	}
	if got := RedactCommand([]byte{0, 0x20, 0, 0, 3, 0x12, 0x34, 0x56}); got != "00 20 00 00 03 [3 bytes redacted]" {
		t.Fatalf("RedactCommand = %q", got)
	}
}
