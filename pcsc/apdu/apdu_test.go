package apdu

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 300)
	cases := []struct {
		name string
		cmd  Command
		want string
	}{
		{"case1", Command{CLA: 0, INS: 0xA4, P1: 0, P2: 0}, "00A40000"},
		{"case2", Command{INS: 0x84, Ne: 8}, "0084000008"},
		{"case2 256", Command{INS: 0xB0, Ne: 256}, "00B0000000"},
		{"case3", Command{INS: 0xA4, Data: []byte{0xEF, 0x05}}, "00A4000002EF05"},
		{"case4", Command{INS: 0xB2, P1: 1, P2: 4, Data: []byte{1}, Ne: 256}, "00B201040101" + "00"},
		{"case2 ext", Command{INS: 0xB0, Ne: 65536}, "00B00000000000"},
		{"case3 ext", Command{INS: 0xD6, Data: big}, "00D60000" + "00012C" + fmt.Sprintf("%X", big)},
		{"case4 ext", Command{INS: 0xD6, Data: big, Ne: 2}, "00D60000" + "00012C" + fmt.Sprintf("%X", big) + "0002"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.cmd.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%X", b); got != c.want {
				t.Fatalf("Bytes = %s, want %s", got, c.want)
			}
			back, err := ParseCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			if back.CLA != c.cmd.CLA || back.INS != c.cmd.INS || back.P1 != c.cmd.P1 || back.P2 != c.cmd.P2 ||
				!bytes.Equal(back.Data, c.cmd.Data) || back.Ne != c.cmd.Ne {
				t.Fatalf("round trip: %+v, want %+v", back, c.cmd)
			}
		})
	}
}

func TestParseCommandRejects(t *testing.T) {
	for _, h := range []string{"00A400", "00A4000003EF05", "00A4000002EF05AABB", "00A40000000002EF"} {
		b, _ := ParseHex(h)
		if _, err := ParseCommand(b); err == nil {
			t.Errorf("ParseCommand(%s) accepted a malformed command", h)
		}
	}
	b, _ := ParseHex("00A4000003EF05")
	if _, err := ParseCommand(b); !errors.Is(err, ErrLcMismatch) {
		t.Errorf("Lc mismatch: got %v", err)
	}
	if err := (Command{Data: make([]byte, 65536)}).Validate(); err == nil {
		t.Error("65536 data bytes accepted")
	}
}

func TestParseHex(t *testing.T) {
	b, err := ParseHex("00 a4:04-00")
	if err != nil || !bytes.Equal(b, []byte{0, 0xA4, 4, 0}) {
		t.Fatalf("ParseHex = %X, %v", b, err)
	}
	if _, err := ParseHex("00A"); err == nil {
		t.Fatal("odd-length hex accepted")
	}
	if _, err := ParseHex("zz"); err == nil {
		t.Fatal("non-hex accepted")
	}
}

func TestStatusWords(t *testing.T) {
	if n, ok := StatusWord(0x63C2).Retries(); !ok || n != 2 {
		t.Fatalf("63C2 retries = %d %v", n, ok)
	}
	if _, ok := SWSecurityStatus.Retries(); ok {
		t.Fatal("6982 has no retries")
	}
	if n, ok := StatusWord(0x6100).MoreData(); !ok || n != 256 {
		t.Fatalf("6100 = %d", n)
	}
	if n, ok := StatusWord(0x6C10).WrongLe(); !ok || n != 16 {
		t.Fatalf("6C10 = %d", n)
	}
	var err error = fmt.Errorf("verify: %w", StatusWord(0x63C1))
	if !errors.Is(err, ErrVerificationFailed) {
		t.Fatal("63C1 does not match ErrVerificationFailed")
	}
	if errors.Is(fmt.Errorf("x: %w", SWAuthBlocked), ErrVerificationFailed) {
		t.Fatal("6983 matched ErrVerificationFailed")
	}
	if !errors.Is(fmt.Errorf("x: %w", SWFileNotFound), SWFileNotFound) {
		t.Fatal("6A82 sentinel")
	}
	var sw StatusWord
	if !errors.As(err, &sw) || sw != 0x63C1 {
		t.Fatal("errors.As")
	}
	if got := SWAppLocked.Error(); got != "card answered 9303: application permanently locked" {
		t.Fatal(got)
	}
	r, err := ParseResponse([]byte{1, 2, 0x90, 0})
	if err != nil || !r.SW.OK() || !bytes.Equal(r.Data, []byte{1, 2}) || r.Err() != nil {
		t.Fatal("ParseResponse")
	}
	if _, err := ParseResponse([]byte{0x90}); err == nil {
		t.Fatal("1-byte response accepted")
	}
}
