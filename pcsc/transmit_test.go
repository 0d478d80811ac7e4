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
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xB2, P1: 1, P2: 4, Ne: 256}, shortLink)
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
	resp, err := transmit(context.Background(), s, apdu.Command{CLA: 0x83, INS: 0x88, Data: []byte{0xAA, 0xBB}}, shortLink)
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
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0x84, Ne: 256}, shortLink)
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
	_, err := transmit(context.Background(), s, apdu.Command{INS: 0x84, Ne: 256}, shortLink)
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
	_, err := transmit(context.Background(), e, apdu.Command{INS: 0xB0, Ne: 1}, shortLink)
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
	_, err := transmit(context.Background(), f, apdu.Command{INS: 0xB0, Ne: 1}, shortLink)
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
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, shortLink)
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
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, shortLink)
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
	if _, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, link{maxData: 1024}); err != nil {
		t.Fatal(err)
	}
	s.done()
}

func TestSensitiveTraceIsRedacted(t *testing.T) {
	s := &script{t: t, steps: [][2]string{
		{"0020000003123456", "6108"},
		{"00C0000008", "A1A2A3A4A5A6A7A89000"},
	}}
	_, err := transmit(context.Background(), s, apdu.Command{INS: 0x20, Data: []byte{0x12, 0x34, 0x56}, Sensitive: true}, shortLink)
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

var t0Link = link{t0: true, maxData: apdu.MaxShortData}

// The bytes on the wire for the four cases, on T=1 and on T=0: on T=0 a
// case 4 command goes as case 3 (no Le after the data) and its answer
// comes by 61xx and GET RESPONSE.
func TestTransmitCasesOnTheWire(t *testing.T) {
	sel := apdu.Command{INS: 0xA4, P1: 0x04, Data: []byte{0xA0, 0x00, 0x00, 0x00, 0x01}, Ne: 256}
	cases := []struct {
		name  string
		l     link
		cmd   apdu.Command
		steps [][2]string
		data  string
	}{
		{"case 1 T=1", shortLink, apdu.Command{INS: 0x44}, [][2]string{{"00440000", "9000"}}, ""},
		{"case 1 T=0", t0Link, apdu.Command{INS: 0x44}, [][2]string{{"00440000", "9000"}}, ""},
		{"case 2 T=1", shortLink, apdu.Command{INS: 0x84, Ne: 8}, [][2]string{{"0084000008", "01020304050607089000"}}, "0102030405060708"},
		{"case 2 T=0", t0Link, apdu.Command{INS: 0x84, Ne: 8}, [][2]string{{"0084000008", "01020304050607089000"}}, "0102030405060708"},
		{"case 3 T=1", shortLink, apdu.Command{INS: 0xD6, Data: []byte{0xAA}}, [][2]string{{"00D60000 01AA", "9000"}}, ""},
		{"case 3 T=0", t0Link, apdu.Command{INS: 0xD6, Data: []byte{0xAA}}, [][2]string{{"00D60000 01AA", "9000"}}, ""},
		{"case 4 T=1", shortLink, sel, [][2]string{{"00A40400 05A000000001 00", "6F009000"}}, "6F00"},
		{"case 4 T=0", t0Link, sel, [][2]string{{"00A40400 05A000000001", "6102"}, {"00C0000002", "6F009000"}}, "6F00"},
		// Ne beyond 256 on T=0: never an extended Le.
		{"case 2 extended Ne T=0", t0Link, apdu.Command{INS: 0xB0, Ne: 1000}, [][2]string{{"00B0000000", "AABB9000"}}, "AABB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.steps {
				c.steps[i][0] = strings.ReplaceAll(c.steps[i][0], " ", "")
			}
			s := &script{t: t, steps: c.steps}
			resp, err := transmit(context.Background(), s, c.cmd, c.l)
			if err != nil || !resp.SW.OK() || fmt.Sprintf("%X", resp.Data) != c.data {
				t.Fatalf("%X %v %v, want %s 9000", resp.Data, resp.SW, err, c.data)
			}
			s.done()
		})
	}
}

// 6Cxx is a cue to resend only for commands without data (case 1/2): a
// command with data answered 6Cxx is not sent again (it could repeat a
// write), on either protocol.
func TestTransmitWrongLeOnlyWithoutData(t *testing.T) {
	for _, l := range []link{shortLink, t0Link} {
		want := "00A40400 02 3F00 00"
		if l.t0 {
			want = "00A40400 02 3F00"
		}
		s := &script{t: t, steps: [][2]string{{strings.ReplaceAll(want, " ", ""), "6C12"}}}
		resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xA4, P1: 4, Data: []byte{0x3F, 0x00}, Ne: 256}, l)
		if err != nil || resp.SW != 0x6C12 || len(resp.Data) != 0 {
			t.Fatalf("t0=%v: %X %v %v, want 6C12 returned as is", l.t0, resp.Data, resp.SW, err)
		}
		s.done()
	}
	// Case 2 on T=0: resent with the right Le.
	s := &script{t: t, steps: [][2]string{{"00B2010410", "6C03"}, {"00B2010403", "0101AA9000"}}}
	resp, err := transmit(context.Background(), s, apdu.Command{INS: 0xB2, P1: 1, P2: 4, Ne: 16}, t0Link)
	if err != nil || !resp.SW.OK() || len(resp.Data) != 3 {
		t.Fatalf("%X %v %v", resp.Data, resp.SW, err)
	}
	s.done()
}

// cancelling is a scripted card that cancels the context when it answers
// the step numbered at.
type cancelling struct {
	script
	cancel func()
	at     int
}

func (c *cancelling) exchange(ctx context.Context, cmd apdu.Command, raw []byte) ([]byte, error) {
	out, err := c.script.exchange(ctx, cmd, raw)
	if c.n == c.at {
		c.cancel()
	}
	return out, err
}

// A context cancelled once the card has been asked does not abandon the
// answer: the GET RESPONSE chain and chained blocks run to the end.
// A context cancelled before the command sends nothing.
func TestTransmitContextOnlyBeforeFirstAPDU(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cancelling{script: script{t: t, steps: [][2]string{
		{"00A404000F" + strings.Repeat("AB", 15), "6104"},
		{"00C0000004", "0102030461 02"},
		{"00C0000002", "05069000"},
	}}, cancel: cancel, at: 1}
	for i := range c.steps {
		c.steps[i][1] = strings.ReplaceAll(c.steps[i][1], " ", "")
	}
	resp, err := transmit(ctx, c, apdu.Command{INS: 0xA4, P1: 4, Data: bytes.Repeat([]byte{0xAB}, 15), Ne: 256}, t0Link)
	if err != nil || !resp.SW.OK() || fmt.Sprintf("%X", resp.Data) != "010203040506" {
		t.Fatalf("cancelled mid-chain: %X %v %v, want the whole answer", resp.Data, resp.SW, err)
	}
	c.done()

	ctx, cancel = context.WithCancel(context.Background())
	data := bytes.Repeat([]byte{0x5A}, 300)
	c = &cancelling{script: script{t: t, steps: [][2]string{
		{"10DC0104FF" + strings.Repeat("5A", 255), "9000"},
		{"00DC01042D" + strings.Repeat("5A", 45), "9000"},
	}}, cancel: cancel, at: 1}
	if resp, err := transmit(ctx, c, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, shortLink); err != nil || !resp.SW.OK() {
		t.Fatalf("cancelled between chained blocks: %v %v", resp.SW, err)
	}
	c.done()

	// Now cancelled: nothing is sent.
	s := &script{t: t}
	_, err = transmit(ctx, s, apdu.Command{INS: 0x84, Ne: 8}, shortLink)
	if !errors.Is(err, context.Canceled) || KindOf(err) != KindCancelled {
		t.Fatalf("cancelled before: %v", err)
	}
	s.done()
}

func TestGetResponseClass(t *testing.T) {
	for cla, want := range map[byte]byte{
		0x00: 0x00, 0x01: 0x01, 0x03: 0x03, // first interindustry: channel in b2-b1
		0x0C: 0x00, 0x0F: 0x03, 0x10: 0x00, // SM and chaining bits dropped
		0x40: 0x40, 0x4F: 0x4F, 0x61: 0x41, 0x7F: 0x4F, // further interindustry: channel in b4-b1
		0x80: 0x00, 0x84: 0x00, 0x83: 0x03, // proprietary (PBOC 80/84): basic channel
		0xC0: 0x00, 0xC4: 0x00, 0xE1: 0x01, // proprietary with b7 set is not further interindustry
	} {
		if got := getResponseCLA(cla); got != want {
			t.Errorf("getResponseCLA(%02X) = %02X, want %02X", cla, got, want)
		}
	}
}

// Command chaining is CLA b5 of an interindustry class without secure
// messaging; for other classes data that does not fit is refused before
// anything is sent.
func TestTransmitNoChainingOnProprietaryOrSM(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	for _, cla := range []byte{0x80, 0x84, 0x04, 0x0C, 0x60, 0x20} {
		s := &script{t: t}
		_, err := transmit(context.Background(), s, apdu.Command{CLA: cla, INS: 0xDC, Data: data}, shortLink)
		if !errors.Is(err, ErrNoChaining) {
			t.Errorf("CLA %02X: %v, want ErrNoChaining", cla, err)
		}
		s.done()
	}
	// A proprietary command that declares ISO chaining is chained.
	s0 := &script{t: t, steps: [][2]string{
		{"90FA0500FF" + strings.Repeat("5A", 255), "9000"},
		{"80FA05002D" + strings.Repeat("5A", 45), "9000"},
	}}
	if _, err := transmit(context.Background(), s0, apdu.Command{CLA: 0x80, INS: 0xFA, P1: 5, Data: data, ProprietaryChaining: true}, shortLink); err != nil {
		t.Fatal(err)
	}
	s0.done()
	// Further interindustry without SM chains with b5.
	s := &script{t: t, steps: [][2]string{
		{"51DC0104FF" + strings.Repeat("5A", 255), "9000"},
		{"41DC01042D" + strings.Repeat("5A", 45), "9000"},
	}}
	if _, err := transmit(context.Background(), s, apdu.Command{CLA: 0x41, INS: 0xDC, P1: 1, P2: 4, Data: data}, shortLink); err != nil {
		t.Fatal(err)
	}
	s.done()
}

// Extended lengths never go on T=0, whatever the reader says: data over
// 255 bytes is chained.
func TestTransmitNoExtendedOnT0(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	s := &script{t: t, steps: [][2]string{
		{"10DC0104FF" + strings.Repeat("5A", 255), "9000"},
		{"00DC01042D" + strings.Repeat("5A", 45), "9000"},
	}}
	if _, err := transmit(context.Background(), s, apdu.Command{INS: 0xDC, P1: 1, P2: 4, Data: data}, link{t0: true, maxData: 1024}); err != nil {
		t.Fatal(err)
	}
	s.done()
}
