package engine_test

import (
	"bytes"
	"testing"

	"ssstation/internal/cardsim/engine"
)

func TestT0GetResponse(t *testing.T) {
	inner := newCard(t)
	c := engine.T0(inner)
	if !bytes.Equal(c.ATR(), unhex(t, "3B 6D 00 00 00 81 4E 43 23 86 97 15 99 00 BF 7C 7A")) {
		t.Fatalf("T0 ATR % X", c.ATR())
	}
	if c.Inner() != inner {
		t.Fatal("Inner")
	}
	const fci = "6F0C 8302DF01 8406A00000000102"
	run(t, c,
		// Case 4 as a TPDU (data and Le): refused, as a strict T=0 card does.
		step{"00A4040006 A00000000102 00", "6700"},
		step{"00A4040006 A00000000102 0E", "6700"},
		// Extended lengths are no T=0 TPDU either.
		step{"00A40400 000006 A00000000102", "6700"},
		step{"00B00000 000100", "6700"},
		// Case 4 sent as case 3: 61xx, then GET RESPONSE with the announced length.
		step{"00A4040006 A00000000102", "610E"},
		step{"00C000000E", fci + "9000"},
		step{"00C000000E", "6985"}, // nothing left
		// In parts: 61yy while more remains; Le beyond what is left: 6Cxx.
		step{"00A4040006 A00000000102", "610E"},
		step{"00C0000004", "6F0C8302 610A"},
		step{"00C0000010", "6C0A"},
		step{"00C0010000", "6A86"},
		step{"00C00000", "6700"},
		step{"00C000000A", "DF01 8406A00000000102 9000"},
		// Le=00 takes everything there is.
		step{"00A4040006 A00000000102", "610E"},
		step{"00C0000000", fci + "9000"},
		// Case 3 as a T=0 host sends it (no Le): the FCI still comes by GET RESPONSE.
		step{"00A4000002 3F00", "6106"},
		step{"00C0000006", "6F0483023F00 9000"},
		step{"00A4000002 2F00", "610D"},
		step{"00C000000D", "6F0B 820101 83022F00 80020010 9000"},
		// No response data: the status word passes through.
		step{"00A4000C02 2F00", "9000"},
		step{"00D6000001 AA", "9000"},
		step{"00A4000002 9999", "6A82"},
		step{"0020000003 123456", "63C2"},
		// Any other command discards what was held.
		step{"00A4000002 3F00", "6106"},
		step{"00A4000C02 2F00", "9000"},
		step{"00C0000006", "6985"},
		// GET RESPONSE of another class is not GET RESPONSE.
		step{"80C0000006", "6E00"},
	)
	// Reset discards it too.
	run(t, c, step{"00A4000002 3F00", "6106"})
	c.Reset()
	run(t, c, step{"00C0000006", "6985"})
}

func TestT0WrongLe(t *testing.T) {
	c := engine.T0(newCard(t))
	run(t, c,
		step{"00A4000C02 2F02", "9000"},
		// Le longer than the record: 6Cxx, then the resend gets it.
		step{"00B2010410", "6C03"},
		step{"00B2010403", "0101AA 9000"},
		// Le shorter: the inner card's own 6Cxx.
		step{"00B2020402", "6C05"},
		step{"00B2020405", "0203BBCCDD 9000"},
		// Le=00 passes through.
		step{"00B2010400", "0101AA 9000"},
		// Errors pass through.
		step{"00B2090410", "6A83"},
		// The held answer is dropped by any other command: the resend
		// after an UPDATE RECORD reads the new record.
		step{"00B2010410", "6C03"},
		step{"00DC010403 010199", "9000"},
		step{"00B2010403", "010199 9000"},
		// A resend with another header is a new command.
		step{"00B2010410", "6C03"},
		step{"00B2020403", "6C05"},
		// READ BINARY past the end: 6282 becomes 6Cxx, the resend 9000.
		step{"00A4000C02 2F00", "9000"},
		step{"00B0000C08", "6C04"},
		step{"00B0000C04", "0C0D0E0F 9000"},
		step{"00B0000004", "00010203 9000"},
	)
}

// T0 of a card without ATRT0 builds a T=0 ATR from the historical bytes.
func TestT0ForeignCard(t *testing.T) {
	c := engine.T0(foreign{})
	info, err := engine.ParseATR(c.ATR())
	if err != nil || len(info.Protocols) != 1 || info.Protocols[0] != 0 || string(info.Historical) != "HI" {
		t.Fatalf("ATR % X: %+v %v", c.ATR(), info, err)
	}
	run(t, c, step{"00A4040002 4142", "6102"}, step{"00C0000002", "4142 9000"})
}

// foreign echoes the command data (or 2 bytes) with 9000.
type foreign struct{}

func (foreign) ATR() []byte { return engine.WithTCK([]byte{0x3B, 0x82, 0x01, 'H', 'I'}) }
func (foreign) Reset()      {}
func (foreign) Process(cmd []byte) []byte {
	if len(cmd) > 5 {
		return append(append([]byte(nil), cmd[5:5+int(cmd[4])]...), 0x90, 0x00)
	}
	return []byte{0x90, 0x00}
}
