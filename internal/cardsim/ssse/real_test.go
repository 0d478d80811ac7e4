package ssse

import (
	"bytes"
	"fmt"
	"testing"

	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

// The real-v1-t0 card answers the public Mingwah trace's reads (card-reference
// §9) TPDU for TPDU, with its own (fictional) data: SELECT SSSE straight
// after reset as a case 3 command, 61 18, GET RESPONSE, the FCI without
// 9F0C, reads by identifier with SFI, SELECT EF with 90 00 and no data.
func TestRealV1T0Trace(t *testing.T) {
	c := newCard(t, "real-v1-t0")
	atr := c.ATR()
	info, err := engine.ParseATR(atr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(atr, mustHex(t, "3B 6D 00 00 00 81")) || len(info.Historical) != 13 || len(info.Protocols) != 1 || info.Protocols[0] != 0 {
		t.Fatalf("ATR % X (historical % X, protocols %v)", atr, info.Historical, info.Protocols)
	}
	img, _ := Builtin("real-v1-t0")
	name, err := records.Encode(records.TypeText, 30, img.Holder.Name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := records.GBKLen(img.Holder.Name)
	for i := n; i < 30; i++ {
		name[i] = 0x20
	}
	steps := []struct{ cmd, resp string }{
		{"00 A4 04 00 0F " + aidHex, "61 18"},
		{"00 C0 00 00 18", "6F 16 84 0F " + aidHex + " A5 03 88 01 0B 90 00"},
		{"00 B2 01 28 12", "01 10 " + img.CardID + " 90 00"},
		{"00 B2 03 28 06", "03 04 31 2E 30 30 90 00"},
		{"00 A4 00 00 02 EF 05", "90 00"},
		// Le 0E for a 9-byte card number: a T=0 card cannot send fewer
		// bytes than Le, so it answers 6Cxx per ISO/IEC 7816-3; the
		// trace's reader resent it with the right Le below its log.
		{"00 B2 07 28 0E", "6C 0B"},
		{"00 B2 07 28 0B", "07 09 41 33 39 39 39 30 30 30 37 90 00"},
		{"00 A4 00 00 02 EF 06", "90 00"},
		{"00 B2 08 30 14", "08 12 36 33 39 39 30 30 31 39 37 35 30 35 30 35 30 30 31 39 90 00"},
		{"00 B2 09 30 20", "09 1E " + fmt.Sprintf("%X", name) + " 90 00"},
		{"00 B2 0A 30 03", "0A 01 31 90 00"},
	}
	for _, s := range steps {
		got := c.Process(mustHex(t, s.cmd))
		if want := mustHex(t, s.resp); !bytes.Equal(got, want) {
			t.Fatalf("%s: % X, want % X", s.cmd, got, want)
		}
	}
	// EF06 records are numbered 1..6 without a gap on this 1.00 card.
	for i, tag := range []byte{0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D} {
		r := send(t, c, fmt.Sprintf("00 B2 %02X 34 00", i+1))
		if r.SW != apdu.SWOK || r.Data[0] != tag {
			t.Fatalf("EF06 record %d: % X %04X, want tag %02X", i+1, r.Data, uint16(r.SW), tag)
		}
	}
	wantSW(t, send(t, c, "00 B2 07 34 00"), apdu.SWRecordNotFound, "EF06 record 7")
	// Other READ RECORD modes (last, next, previous occurrence) are refused.
	wantSW(t, send(t, c, "00 B2 08 31 00"), apdu.SWIncorrectP1P2, "mode 001")
	wantSW(t, send(t, c, "00 B2 08 33 00"), apdu.SWIncorrectP1P2, "mode 011")
}

// PIN reload the way SI_3rdCard does it (card-reference §9): EXTERNAL
// AUTHENTICATE 06, SELECT SSSE again, GET CHALLENGE, 84 24 00 01 14: the
// re-selection keeps the authentication.
func TestPINReloadAfterReselect(t *testing.T) {
	for _, name := range []string{"sample-v1", "sample-v2", "sample-v3", "real-v1-t0"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			h := newHost(t, c)
			selectApp(t, c)
			kk, kname := h.keyFor("reload")
			wantSW(t, h.extAuth(t, c, kk, kname, false), apdu.SWOK, "EXTERNAL AUTHENTICATE 06")
			wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE again")
			tpl := profiles.CmdPINReloadByKey
			cmd := h.macCommand(t, c, tpl, map[string][]byte{"cryptogram16": h.encPIN(t, tpl, "975318")}, false)
			wantSW(t, xfer(t, c, cmd), apdu.SWOK, "84 24 00 01 14")
			if c.PIN() != "975318" {
				t.Fatalf("PIN %s", c.PIN())
			}
			// A reset drops the authentication.
			c.Reset()
			selectApp(t, c)
			cmd = h.macCommand(t, c, tpl, map[string][]byte{"cryptogram16": h.encPIN(t, tpl, "864207")}, false)
			wantSW(t, xfer(t, c, cmd), apdu.SWSecurityStatus, "84 24 after a reset")
		})
	}
}
