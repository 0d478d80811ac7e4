package ssse

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	"ssstation/cardapp/secure"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/pcsc/apdu"
)

const aidHex = "7378312E73682EC9E7BBE1B1A3D5CF"

var builtinProfiles = func() *profiles.Set {
	s, err := profiles.Builtin()
	if err != nil {
		panic(err)
	}
	return s
}()

func newCard(t *testing.T, name string) *Card {
	t.Helper()
	img, err := Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(img, builtinProfiles)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	c.Reset()
	return c
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := apdu.ParseHex(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// xfer sends one command like the host transport does: 61xx is followed by
// GET RESPONSE, 6Cxx by the same command with Le = xx.
//
// On a T=0 card a command with data never carries Le (case 4 goes as case
// 3, the answer comes by 61xx), as the host's transmit loop sends it.
func xfer(t *testing.T, c *Card, cmd apdu.Command) apdu.Response {
	t.Helper()
	if c.t0 != nil && len(cmd.Data) > 0 {
		cmd.Ne = 0
	}
	raw, err := cmd.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for range 10 {
		r, err := apdu.ParseResponse(c.Process(raw))
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, r.Data...)
		switch r.SW.SW1() {
		case 0x61:
			raw = []byte{0x00, 0xC0, 0x00, 0x00, r.SW.SW2()}
			continue
		case 0x6C:
			cmd.Ne = int(r.SW.SW2())
			raw, _ = cmd.Bytes()
			continue
		}
		return apdu.Response{Data: data, SW: r.SW}
	}
	t.Fatal("transport loop")
	return apdu.Response{}
}

// send sends hex bytes and returns the response.
func send(t *testing.T, c *Card, h string) apdu.Response {
	t.Helper()
	cmd, err := apdu.ParseCommand(mustHex(t, h))
	if err != nil {
		t.Fatal(err)
	}
	return xfer(t, c, cmd)
}

func wantSW(t *testing.T, r apdu.Response, sw apdu.StatusWord, what string) {
	t.Helper()
	if r.SW != sw {
		t.Fatalf("%s: SW %04X, want %04X", what, uint16(r.SW), uint16(sw))
	}
}

// selectApp selects the SSSE application as the host does for the profile.
func selectApp(t *testing.T, c *Card) apdu.Response {
	t.Helper()
	if c.Profile().Select.MFFirst {
		wantSW(t, send(t, c, "00 A4 00 00 02 3F 00"), apdu.SWOK, "SELECT MF")
	}
	return send(t, c, "00 A4 04 00 0F "+aidHex+" 00")
}

func selectEF(t *testing.T, c *Card, fid string) {
	t.Helper()
	p1 := c.Profile().Select.EFP1
	wantSW(t, send(t, c, fmt.Sprintf("00 A4 %02X 00 02 %s", p1, fid)), apdu.SWOK, "SELECT "+fid)
}

// host is the key holder's side, as the station computes it.
type host struct {
	ks   *keys.SoftwareKeystore
	alg  keys.Algorithm
	path [][]byte
	prof *profiles.Profile
}

func newHost(t *testing.T, c *Card) *host {
	t.Helper()
	p := c.Profile()
	alg, err := keys.ParseAlgorithm(p.Crypto.Algorithm)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{ks: keys.NewTestKeystore(), alg: alg, prof: p}
	t.Cleanup(func() { h.ks.Close() })
	// The host reads the identification code from the card (EF05 record 1).
	id := c.Record("EF05", 1)[2:]
	for _, level := range p.Crypto.Diversification.Levels {
		f, err := profiles.DivInput(level, id)
		if err != nil {
			t.Fatal(err)
		}
		h.path = append(h.path, f)
	}
	return h
}

func (h *host) req(name string) keys.Request {
	return keys.Request{Key: keys.KeyName(name), Algorithm: h.alg, Path: h.path}
}

func challenge(t *testing.T, c *Card) []byte {
	t.Helper()
	r := send(t, c, "00 84 00 00 08")
	wantSW(t, r, apdu.SWOK, "GET CHALLENGE")
	if len(r.Data) != 8 {
		t.Fatalf("challenge of %d bytes", len(r.Data))
	}
	return r.Data
}

// extAuth runs GET CHALLENGE + EXTERNAL AUTHENTICATE with card key index kk,
// the cryptogram computed with holder key name (wrong: corrupted).
func (h *host) extAuth(t *testing.T, c *Card, kk byte, name string, wrong bool) apdu.Response {
	t.Helper()
	ch := challenge(t, c)
	crypt, err := keys.ExternalAuthCryptogram(context.Background(), h.ks, h.req(name), ch)
	if err != nil {
		t.Fatal(err)
	}
	if wrong {
		crypt[0] ^= 0x01
	}
	return xfer(t, c, apdu.Command{CLA: 0x00, INS: 0x82, P1: 0x00, P2: kk, Data: crypt})
}

func (h *host) keyFor(role string) (byte, string) {
	name, _ := h.prof.HolderKeyFor(role)
	return byte(h.prof.Crypto.Keys[role]), name
}

// macCommand builds a profile template command as the host does: GET
// CHALLENGE, the template with the other values, then the MAC over
// secure.MACInput with the IV from the challenge. badMAC flips a bit.
func (h *host) macCommand(t *testing.T, c *Card, tpl string, vals map[string][]byte, badMAC bool) apdu.Command {
	t.Helper()
	tp, ok := h.prof.Template(tpl)
	if !ok {
		t.Fatalf("no template %s", tpl)
	}
	ch := challenge(t, c)
	if vals == nil {
		vals = map[string][]byte{}
	}
	vals["mac"] = make([]byte, 4)
	raw, err := tp.Build(vals)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	in, err := secure.MACInput(cmd.CLA, cmd.INS, cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		t.Fatal(err)
	}
	iv, err := secure.IV(h.alg, ch)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := h.ks.MAC(context.Background(), h.req(tp.MACKey), iv, in)
	if err != nil {
		t.Fatal(err)
	}
	if badMAC {
		mac[3] ^= 0x80
	}
	copy(cmd.Data[len(cmd.Data)-4:], mac)
	return cmd
}

// encPIN is the encrypted PIN block of the reload/unblock commands.
func (h *host) encPIN(t *testing.T, tpl, pin string) []byte {
	t.Helper()
	tp, _ := h.prof.Template(tpl)
	block, err := secure.PINBlock(pin)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.ks.Encrypt(context.Background(), h.req(tp.EncKey), block)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verifyCmd(t *testing.T, pin string) apdu.Command {
	t.Helper()
	b, err := secure.EncodePIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	return apdu.Command{CLA: 0x00, INS: 0x20, Data: b}
}

func changePINCmd(t *testing.T, old, new string) apdu.Command {
	t.Helper()
	o, err := secure.EncodePIN(old)
	if err != nil {
		t.Fatal(err)
	}
	n, err := secure.EncodePIN(new)
	if err != nil {
		t.Fatal(err)
	}
	return apdu.Command{CLA: 0x80, INS: 0x5E, P1: 0x01, Data: append(append(o, 0xFF), n...)}
}

func TestBuiltinImages(t *testing.T) {
	want := []string{"blank-v1", "blank-v2", "blank-v3", "delivered-v2", "delivered-v3", "locked-v2", "real-v1-t0", "sample-v1", "sample-v2", "sample-v3", "transport-locked-v2", "transport-locked-v3"}
	if got := BuiltinNames(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("BuiltinNames = %v, want %v", got, want)
	}
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	for _, name := range want {
		img, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(img, builtinProfiles)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := c.Profile()
		switch {
		case img.Card != nil && img.Card.ATR != "":
			// The card's own ATR, which no profile knows.
			for _, q := range builtinProfiles.List() {
				if q.MatchATR(c.ATR()) >= 0 {
					t.Errorf("%s: ATR % X matches profile %s", name, c.ATR(), q.Name)
				}
			}
		case !bytes.Equal(c.ATR(), p.ATR[0].Pattern) || p.MatchATR(c.ATR()) < 0:
			t.Errorf("%s: ATR % X, want the profile's % X", name, c.ATR(), p.ATR[0].Pattern)
		}
		if c.State() != img.State || c.PIN() != img.PIN.Value {
			t.Errorf("%s: state %s PIN %s", name, c.State(), c.PIN())
		}
		if ssn := img.Holder.SSN; ssn != "" {
			sum := 0
			for i, w := range weights {
				sum += int(ssn[i]-'0') * w
			}
			if "10X98765432"[sum%11] != ssn[17] {
				t.Errorf("%s: SSN %s has a wrong check digit", name, ssn)
			}
		}
		if got := c.Record("EF05", 3); string(got[2:]) != p.SpecVersion {
			t.Errorf("%s: spec version record %q, profile %s", name, got, p.SpecVersion)
		}
	}
}

func TestReadEveryRecord(t *testing.T) {
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			switch c.State() {
			case StateTransportLocked:
				wantSW(t, selectApp(t, c), apdu.SWWarningFileInvalidated, "SELECT SSSE")
				// A-BLOCKED-READ: a transport-locked card is read, never written or PIN-verified.
				wantSW(t, send(t, c, "00 A4 02 00 02 EF 05"), apdu.SWOK, "SELECT EF05 while locked")
				wantSW(t, send(t, c, "00 B2 03 04 00"), apdu.SWOK, "READ RECORD while locked")
				wantSW(t, xfer(t, c, verifyCmd(t, "123456")), apdu.SWConditionsNotSatisfied, "VERIFY while locked")
				return
			case StateBlockedPermanent:
				wantSW(t, selectApp(t, c), apdu.SWAppLocked, "SELECT SSSE")
				wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWAppLocked, "READ RECORD")
				return
			}
			wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE")
			p := c.Profile()
			h := newHost(t, c)
			if k, ok := p.Crypto.Keys["read"]; ok && p.Files["EF06"].Read.Kind == profiles.AccessKey {
				wantSW(t, h.extAuth(t, c, byte(k), "rkssse", false), apdu.SWOK, "EXTERNAL AUTHENTICATE 0A")
			}
			for _, fname := range []string{"EF05", "EF06"} {
				f := p.Files[fname]
				selectEF(t, c, fmt.Sprintf("%02X%02X", f.FID[0], f.FID[1]))
				have := map[int]bool{}
				for _, rec := range f.Records {
					num := cardNumber(c, fname, rec)
					have[num] = true
					r := send(t, c, fmt.Sprintf("00 B2 %02X 04 00", num))
					wantSW(t, r, apdu.SWOK, fmt.Sprintf("%s record %d", fname, num))
					if len(r.Data) != rec.Length+2 || r.Data[0] != rec.Tag || int(r.Data[1]) != rec.Length {
						t.Fatalf("%s record %d: % X, want tag %02X length %d", fname, num, r.Data, rec.Tag, rec.Length)
					}
					if !bytes.Equal(r.Data, c.Record(fname, num)) {
						t.Fatalf("%s record %d differs from Record()", fname, num)
					}
					// By tag too, in the current EF and by identifier with SFI.
					rt := send(t, c, fmt.Sprintf("00 B2 %02X 00 00", rec.Tag))
					if rt.SW != apdu.SWOK || !bytes.Equal(rt.Data, r.Data) {
						t.Fatalf("%s tag %02X: % X %04X", fname, rec.Tag, rt.Data, uint16(rt.SW))
					}
					rs := send(t, c, fmt.Sprintf("00 B2 %02X %02X 00", rec.Tag, f.FID[1]<<3))
					if rs.SW != apdu.SWOK || !bytes.Equal(rs.Data, r.Data) {
						t.Fatalf("%s identifier %02X with SFI: % X %04X", fname, rec.Tag, rs.Data, uint16(rs.SW))
					}
					if c.State() == StateBlank {
						v := r.Data[2:]
						if rec.Item == profiles.ItemCardID || rec.Item == profiles.ItemSpecVersion {
							if records.IsBlank(v) {
								t.Fatalf("blank card: %s is blank", rec.Item)
							}
						} else if want := blankValue(rec.Type, rec.Length); !bytes.Equal(v, want) {
							t.Fatalf("blank card: %s = % X, want % X", rec.Item, v, want)
						}
					}
				}
				for n := 1; n <= 8; n++ {
					if !have[n] {
						wantSW(t, send(t, c, fmt.Sprintf("00 B2 %02X 04 00", n)), apdu.SWRecordNotFound, fmt.Sprintf("%s record %d", fname, n))
					}
				}
			}
		})
	}
}

// cardNumber is the number of a profile record on this card.
func cardNumber(c *Card, fname string, rec profiles.Record) int {
	for _, info := range c.files {
		if info.name == fname {
			return info.number(rec)
		}
	}
	return rec.Number
}

func TestRecordBytes(t *testing.T) {
	zeros := func(n int) string { return strings.Repeat(" 00", n) }
	cases := []struct {
		image, file string
		n           int
		want        string
	}{
		{"sample-v1", "EF05", 1, "01 10 63 99 00 D1 56 00 00 05 00 BF 7C 7A 48 FB 49 66"},
		{"sample-v1", "EF05", 2, "02 01 31"},
		{"sample-v1", "EF05", 3, "03 04 31 2E 30 30"},
		{"sample-v1", "EF05", 4, "04 0C 41 01 00 81 34 75 FF FF FF FF FF FF"},
		{"sample-v1", "EF05", 5, "05 04 20 10 10 01"},
		{"sample-v1", "EF05", 6, "06 04 20 20 10 01"},
		{"sample-v1", "EF05", 7, "07 09 58 30 30 30 30 30 30 31 39"},
		{"sample-v1", "EF06", 1, "08 12 31 31 31 31 31 31 31 39 38 31 30 31 30 31 31 31 31 30"},
		{"sample-v1", "EF06", 2, "09 1E D5 C5 C8 FD" + zeros(26)},
		{"sample-v1", "EF06", 4, "0A 01 31"},
		{"sample-v1", "EF06", 5, "0B 01 01"},
		{"sample-v1", "EF06", 6, "0C 03 63 99 00"},
		{"sample-v1", "EF06", 7, "0D 04 19 81 01 01"},
		{"sample-v2", "EF06", 2, "09 1E B0 A2 B2 B7 B6 C5 C8 C8 BA CF C2 FC A1 A4 C2 F2 C2 F2 CC E1 B0 AC C1 A6 A1 A4 CD C2 B6 FB"},
		{"sample-v2", "EF06", 3, "4E 14 D1 B7 CD D0 BA CF CC E1" + zeros(12)},
		{"sample-v2", "EF06", 1, "08 12 34 34 30 33 30 35 31 39 39 30 30 31 30 31 31 32 33 58"},
		{"sample-v2", "EF06", 5, "0B 01 05"},
		{"sample-v3", "EF06", 2, "09 1E C0 EE D0 A1 C1 FA" + zeros(24)},
		{"sample-v3", "EF06", 3, "4E 14" + zeros(20)},
		{"sample-v3", "EF05", 2, "02 01 33"},
		{"blank-v1", "EF05", 1, "01 10 63 99 00 D1 56 00 00 05 00 00 00 00 00 00 00 01"},
		{"blank-v1", "EF05", 2, "02 01 00"},
		{"blank-v1", "EF05", 4, "04 0C FF FF FF FF FF FF FF FF FF FF FF FF"},
		{"blank-v2", "EF06", 2, "09 1E" + zeros(30)},
		{"blank-v3", "EF05", 3, "03 04 33 2E 30 30"},
	}
	for _, tc := range cases {
		c := newCard(t, tc.image)
		got := c.Record(tc.file, tc.n)
		if want := mustHex(t, tc.want); !bytes.Equal(got, want) {
			t.Errorf("%s %s record %d:\n got % X\nwant % X", tc.image, tc.file, tc.n, got, want)
		}
	}
	if r := newCard(t, "sample-v1").Record("EF06", 3); r != nil {
		t.Errorf("v1 EF06 record 3 exists: % X", r)
	}
	// The full name reads back from 09 + 4E.
	c := newCard(t, "sample-v2")
	name, _ := records.Decode("an", append(c.Record("EF06", 2)[2:], c.Record("EF06", 3)[2:]...))
	if name != "阿卜杜热合曼·买买提艾力·吐尔逊托合提" {
		t.Errorf("name reads back as %q", name)
	}
}

func TestV3ReadNeedsExternalAuth(t *testing.T) {
	c := newCard(t, "sample-v3")
	h := newHost(t, c)
	wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE")
	selectEF(t, c, "EF05")
	r := send(t, c, "00 B2 01 04 00")
	wantSW(t, r, apdu.SWOK, "card id (free)")
	wantSW(t, send(t, c, "00 B2 03 04 00"), apdu.SWOK, "spec version (free)")
	// EF05 is free on 3.0 cards: public software reads the card number
	// and dates before RKSSSE (card-reference §9).
	r = send(t, c, "00 B2 07 04 00")
	wantSW(t, r, apdu.SWOK, "card number before auth")
	if want := mustHex(t, "07 09 42 31 31 30 31 30 30 33 34"); !bytes.Equal(r.Data, want) {
		t.Fatalf("card number % X", r.Data)
	}
	wantSW(t, send(t, c, "00 B2 05 28 00"), apdu.SWOK, "issue date by identifier, SFI 5")
	// EF06 waits for EXTERNAL AUTHENTICATE with 0A (00 82 00 0A 10).
	selectEF(t, c, "EF06")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWSecurityStatus, "SSN before auth")
	wantSW(t, send(t, c, "00 B2 08 30 00"), apdu.SWSecurityStatus, "SSN by identifier before auth")
	wantSW(t, h.extAuth(t, c, 0x04, "ef-write", false), apdu.SWOK, "auth 04")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWSecurityStatus, "SSN after auth 04 only")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWOK, "auth 0A")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWOK, "SSN")
	// Re-selecting the application keeps the authentication (the public
	// PIN reload relies on it, card-reference §9)...
	wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE")
	wantSW(t, send(t, c, "00 B2 08 30 00"), apdu.SWOK, "SSN after reselect")
	// ...selecting the MF drops it.
	wantSW(t, send(t, c, "00 A4 00 00 02 3F 00"), apdu.SWOK, "SELECT MF")
	wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE")
	selectEF(t, c, "EF06")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWSecurityStatus, "SSN after SELECT MF")
	// And so does a reset.
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWOK, "auth 0A")
	c.Reset()
	selectApp(t, c)
	selectEF(t, c, "EF06")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWSecurityStatus, "SSN after reset")
	// A short Le answers 6Cxx with the record's length.
	selectEF(t, c, "EF05")
	raw := mustHex(t, "00 B2 01 04 05")
	if got := c.Process(raw); !bytes.Equal(got, []byte{0x6C, 0x12}) {
		t.Fatalf("short Le: % X", got)
	}
}

func TestExternalAuthenticate(t *testing.T) {
	c := newCard(t, "sample-v3")
	h := newHost(t, c)
	selectApp(t, c)
	wantSW(t, send(t, c, "00 82 00 0A 10"+strings.Repeat(" 00", 16)), apdu.SWConditionsNotSatisfied, "no challenge")
	challenge(t, c)
	wantSW(t, send(t, c, "00 82 00 55 10"+strings.Repeat(" 00", 16)), apdu.SWRefDataNotFound, "unknown key")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", true), 0x63C2, "wrong 1")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", true), 0x63C1, "wrong 2")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWOK, "right")
	if c.KeyTries(0x0A) != ExternalAuthTries {
		t.Fatalf("tries after success: %d", c.KeyTries(0x0A))
	}
	// The challenge is one use.
	ch := challenge(t, c)
	crypt, _ := keys.ExternalAuthCryptogram(context.Background(), h.ks, h.req("rkssse"), ch)
	cmd := apdu.Command{INS: 0x82, P2: 0x0A, Data: crypt}
	wantSW(t, xfer(t, c, cmd), apdu.SWOK, "right")
	wantSW(t, xfer(t, c, cmd), apdu.SWConditionsNotSatisfied, "replayed")
	// Another key's cryptogram is wrong for 0A.
	wantSW(t, h.extAuth(t, c, 0x0A, "ef-write", false), 0x63C2, "wrong key")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", true), 0x63C1, "wrong")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", true), apdu.SWAuthBlocked, "wrong, blocked")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWAuthBlocked, "right but blocked")
	c.Reset()
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWAuthBlocked, "blocked after reset")
	// Other keys are unaffected.
	wantSW(t, h.extAuth(t, c, 0x04, "ef-write", false), apdu.SWOK, "key 04")
	wantSW(t, h.extAuth(t, c, 0x06, "pin-reload", false), apdu.SWOK, "key 06")
}

func TestInternalAuthenticate(t *testing.T) {
	for _, name := range []string{"sample-v1", "sample-v2", "sample-v3", "delivered-v3", "locked-v2"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			h := newHost(t, c)
			if name != "locked-v2" {
				selectApp(t, c)
			}
			factor := c.CardID()[8:]
			data := mustHex(t, "01 02 03 04 05 06 07 08")
			r := xfer(t, c, apdu.Command{INS: 0x88, Data: append(append([]byte(nil), factor...), data...), Ne: 256})
			wantSW(t, r, apdu.SWOK, "INTERNAL AUTHENTICATE")
			in, _ := secure.InternalAuthData(h.alg, data)
			want, err := h.ks.Encrypt(context.Background(), h.req("internal-auth"), in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Data, want) || len(want) != h.alg.BlockSize() {
				t.Fatalf("answer % X, want % X", r.Data, want)
			}
			// Any 8-byte process factor (SI_3rdCard takes it from GET
			// CHALLENGE, card-reference §9): the answer depends on the data.
			pf := mustHex(t, "A5 5A 00 FF 12 34 56 78")
			if name != "locked-v2" { // a permanently blocked card answers only INTERNAL AUTHENTICATE
				pf = challenge(t, c)
			}
			r2 := xfer(t, c, apdu.Command{INS: 0x88, Data: append(append([]byte(nil), pf...), data...), Ne: 256})
			if r2.SW != apdu.SWOK || !bytes.Equal(r2.Data, want) {
				t.Fatalf("process factor from GET CHALLENGE: % X %04X", r2.Data, uint16(r2.SW))
			}
			wantSW(t, xfer(t, c, apdu.Command{INS: 0x88, P2: 0x01, Data: append(factor, data...), Ne: 256}), apdu.SWRefDataNotFound, "wrong key")
		})
	}
}

func TestVerify(t *testing.T) {
	c := newCard(t, "sample-v1") // 3 tries, no empty VERIFY
	selectApp(t, c)
	wantSW(t, xfer(t, c, verifyCmd(t, "246810")), apdu.SWOK, "right")
	wantSW(t, send(t, c, "00 20 00 00"), apdu.SWWrongLength, "empty VERIFY on v1")
	wantSW(t, xfer(t, c, verifyCmd(t, "123456")), 0x63C2, "wrong 1")
	wantSW(t, xfer(t, c, verifyCmd(t, "246810")), apdu.SWOK, "right resets")
	if c.Tries() != 3 {
		t.Fatalf("tries %d", c.Tries())
	}
	wantSW(t, xfer(t, c, verifyCmd(t, "111111")), 0x63C2, "wrong 1")
	wantSW(t, xfer(t, c, verifyCmd(t, "111111")), 0x63C1, "wrong 2")
	wantSW(t, xfer(t, c, verifyCmd(t, "111111")), apdu.SWAuthBlocked, "wrong 3")
	wantSW(t, xfer(t, c, verifyCmd(t, "246810")), apdu.SWAuthBlocked, "right but blocked")
	wantSW(t, xfer(t, c, changePINCmd(t, "246810", "135791")), apdu.SWAuthBlocked, "CHANGE PIN blocked")
	if c.Tries() != 0 {
		t.Fatalf("tries %d", c.Tries())
	}

	c = newCard(t, "sample-v2") // 6 tries, empty VERIFY reports tries
	selectApp(t, c)
	wantSW(t, send(t, c, "00 20 00 00"), 0x63C6, "empty VERIFY")
	wantSW(t, xfer(t, c, verifyCmd(t, "13579")), 0x63C5, "wrong (odd length)")
	wantSW(t, send(t, c, "00 20 00 00"), 0x63C5, "empty VERIFY spends nothing")
	wantSW(t, xfer(t, c, verifyCmd(t, "135790")), apdu.SWOK, "right")
	wantSW(t, send(t, c, "00 20 00 00"), apdu.SWOK, "empty VERIFY when verified")
	for i := 5; i >= 1; i-- {
		wantSW(t, xfer(t, c, verifyCmd(t, "000000")), apdu.StatusWord(0x63C0|i), "wrong")
	}
	wantSW(t, xfer(t, c, verifyCmd(t, "000000")), apdu.SWAuthBlocked, "wrong, blocked")
	wantSW(t, send(t, c, "00 20 00 00"), apdu.SWAuthBlocked, "empty VERIFY when blocked")
}

func TestChangePIN(t *testing.T) {
	c := newCard(t, "sample-v2")
	selectApp(t, c)
	wantSW(t, xfer(t, c, changePINCmd(t, "135790", "24680")), apdu.SWOK, "CHANGE PIN (odd new)")
	if c.PIN() != "24680" {
		t.Fatalf("PIN %s", c.PIN())
	}
	wantSW(t, xfer(t, c, changePINCmd(t, "135790", "1111")), 0x63C5, "wrong old")
	wantSW(t, xfer(t, c, changePINCmd(t, "24680", "123")), apdu.SWWrongData, "new too short")
	wantSW(t, xfer(t, c, changePINCmd(t, "24680", "12345678901234567")), apdu.SWWrongData, "new too long")
	wantSW(t, send(t, c, "80 5E 01 00 03 24 68 0F"), apdu.SWWrongData, "no separator")
	wantSW(t, send(t, c, "80 5E 01 00 07 24 68 0F FF 12 3A 45"), apdu.SWWrongData, "new not digits")
	wantSW(t, xfer(t, c, changePINCmd(t, "24680", "9876")), apdu.SWOK, "CHANGE PIN")
	if c.PIN() != "9876" || c.Tries() != 6 {
		t.Fatalf("PIN %s tries %d", c.PIN(), c.Tries())
	}
	wantSW(t, xfer(t, c, verifyCmd(t, "9876")), apdu.SWOK, "VERIFY new")

	c = newCard(t, "sample-v1") // 6..6 digits
	selectApp(t, c)
	wantSW(t, xfer(t, c, changePINCmd(t, "246810", "12345")), apdu.SWWrongData, "v1: 5 digits")
	wantSW(t, xfer(t, c, changePINCmd(t, "246810", "975310")), apdu.SWOK, "v1")
}

func TestPINReloadByKey(t *testing.T) {
	for _, name := range []string{"sample-v2", "sample-v3"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			h := newHost(t, c)
			selectApp(t, c)
			tpl := profiles.CmdPINReloadByKey
			vals := func(pin string) map[string][]byte {
				return map[string][]byte{"cryptogram16": h.encPIN(t, tpl, pin)}
			}
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals("4321"), false)), apdu.SWSecurityStatus, "without EXTERNAL AUTHENTICATE 06")
			kk, kname := h.keyFor("reload")
			wantSW(t, h.extAuth(t, c, kk, kname, false), apdu.SWOK, "auth 06")
			cmd := h.macCommand(t, c, tpl, vals("4321"), false)
			takeChallengeForTest(c)
			wantSW(t, xfer(t, c, cmd), apdu.SWConditionsNotSatisfied, "no challenge")
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals("4321"), true)), apdu.SWSMDataIncorrect, "bad MAC")
			// Block the PIN; the reload sets it and gives the tries back.
			for range 10 {
				if xfer(t, c, verifyCmd(t, "0000")).SW == apdu.SWAuthBlocked {
					break
				}
			}
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals("4321"), false)), apdu.SWOK, "reload")
			if c.PIN() != "4321" || c.Tries() != c.Profile().PIN.Tries {
				t.Fatalf("PIN %s tries %d", c.PIN(), c.Tries())
			}
			wantSW(t, xfer(t, c, verifyCmd(t, "4321")), apdu.SWOK, "VERIFY reloaded")
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals("123"), false)), apdu.SWWrongData, "too short")
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, map[string][]byte{"cryptogram16": make([]byte, 16)}, false)), apdu.SWWrongData, "garbage block")
		})
	}
}

// takeChallengeForTest forgets the card's challenge, as a reset would,
// without resetting anything else.
func takeChallengeForTest(c *Card) { c.eng.Do(func(e *engine.Card) { e.Challenge = nil }) }

func TestPINReloadTemplate(t *testing.T) {
	c := newCard(t, "sample-v3")
	h := newHost(t, c)
	selectApp(t, c)
	pin, _ := secure.EncodePIN("13579")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdPINReload, map[string][]byte{"pin": pin}, true)), apdu.SWSMDataIncorrect, "bad MAC")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdPINReload, map[string][]byte{"pin": pin}, false)), apdu.SWOK, "RELOAD PIN")
	if c.PIN() != "13579" {
		t.Fatalf("PIN %s", c.PIN())
	}
	short, _ := secure.EncodePIN("135")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdPINReload, map[string][]byte{"pin": short}, false)), apdu.SWWrongData, "too short")
}

func TestPINUnblock(t *testing.T) {
	for _, name := range []string{"sample-v1", "sample-v3"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			h := newHost(t, c)
			selectApp(t, c)
			for range 3 {
				xfer(t, c, verifyCmd(t, "000000"))
			}
			if c.Tries() != 0 {
				t.Fatalf("tries %d", c.Tries())
			}
			tpl := profiles.CmdPINUnblock
			vals := func() map[string][]byte { return nil }
			cmd := h.macCommand(t, c, tpl, vals(), false)
			takeChallengeForTest(c)
			wantSW(t, xfer(t, c, cmd), apdu.SWConditionsNotSatisfied, "no challenge")
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals(), true)), apdu.SWSMDataIncorrect, "bad MAC")
			if c.Tries() != 0 {
				t.Fatal("bad MAC unblocked")
			}
			// PIN UNBLOCK resets the try counter and keeps the PIN
			// (card-reference §9).
			img, _ := Builtin(name)
			wantSW(t, xfer(t, c, h.macCommand(t, c, tpl, vals(), false)), apdu.SWOK, "PIN UNBLOCK")
			if c.PIN() != img.PIN.Value || c.Tries() != 3 {
				t.Fatalf("PIN %s tries %d", c.PIN(), c.Tries())
			}
			wantSW(t, xfer(t, c, verifyCmd(t, img.PIN.Value)), apdu.SWOK, "VERIFY the old PIN")
		})
	}
}

func TestApplicationBlockUnblock(t *testing.T) {
	c := newCard(t, "sample-v2")
	h := newHost(t, c)
	selectApp(t, c)
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, false)), apdu.SWOK, "unblock when active (idempotent)")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationBlockTemporary, nil, true)), apdu.SWSMDataIncorrect, "bad MAC")
	wantSW(t, send(t, c, "84 1E 00 00 04 01 02 03 04"), apdu.SWConditionsNotSatisfied, "no challenge")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationBlockTemporary, nil, false)), apdu.SWOK, "block temporary")
	if c.State() != StateBlockedTemporary {
		t.Fatalf("state %s", c.State())
	}
	r := selectApp(t, c)
	wantSW(t, r, apdu.SWWarningFileInvalidated, "SELECT blocked")
	if len(r.Data) == 0 || r.Data[0] != 0x6F {
		t.Fatalf("no FCI with 6283: % X", r.Data)
	}
	wantSW(t, send(t, c, "00 A4 02 00 02 EF 05"), apdu.SWOK, "SELECT EF05")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWOK, "READ RECORD (A-BLOCKED-READ)")
	wantSW(t, send(t, c, "00 DC 02 04 03 02 01 31"), apdu.SWConditionsNotSatisfied, "UPDATE RECORD")
	wantSW(t, xfer(t, c, verifyCmd(t, "135790")), apdu.SWConditionsNotSatisfied, "VERIFY")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, true)), apdu.SWSMDataIncorrect, "unblock bad MAC")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, false)), apdu.SWOK, "unblock")
	if c.State() != StateActive {
		t.Fatalf("state %s", c.State())
	}
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, false)), apdu.SWOK, "unblock again")
	wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT after unblock")

	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationBlockPermanent, nil, false)), apdu.SWOK, "block permanent")
	if c.State() != StateBlockedPermanent {
		t.Fatalf("state %s", c.State())
	}
	wantSW(t, send(t, c, "00 84 00 00 08"), apdu.SWAppLocked, "GET CHALLENGE")
	c.Reset()
	wantSW(t, send(t, c, "00 A4 00 00 02 3F 00"), apdu.SWOK, "SELECT MF")
	wantSW(t, send(t, c, "00 A4 04 00 0F "+aidHex+" 00"), apdu.SWAppLocked, "SELECT SSSE")
	wantSW(t, send(t, c, "00 B2 01 04 00"), apdu.SWAppLocked, "READ RECORD")
	wantSW(t, xfer(t, c, verifyCmd(t, "135790")), apdu.SWAppLocked, "VERIFY")
}

func TestCardBlock(t *testing.T) {
	c := newCard(t, "sample-v3")
	h := newHost(t, c)
	selectApp(t, c)
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdCardBlock, nil, true)), apdu.SWSMDataIncorrect, "bad MAC")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdCardBlock, nil, false)), apdu.SWOK, "CARD BLOCK")
	if c.State() != StateCardBlocked {
		t.Fatalf("state %s", c.State())
	}
	c.Reset()
	wantSW(t, send(t, c, "00 A4 00 00 02 3F 00"), apdu.SWFuncNotSupported, "SELECT MF")
	wantSW(t, send(t, c, "00 A4 04 00 0F "+aidHex+" 00"), apdu.SWFuncNotSupported, "SELECT SSSE")
	wantSW(t, send(t, c, "00 84 00 00 08"), apdu.SWFuncNotSupported, "GET CHALLENGE")
}

func TestPersonalizeFinalizeActivate(t *testing.T) {
	c := newCard(t, "blank-v3")
	h := newHost(t, c)
	wantSW(t, selectApp(t, c), apdu.SWOK, "SELECT SSSE")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdFinalize, nil, false)), apdu.SWConditionsNotSatisfied, "FINALIZE blank")
	selectEF(t, c, "EF06")
	name, _ := records.Encode("an", 30, "王五")
	rec := records.TLV(0x09, name)
	upd := apdu.Command{INS: 0xDC, P1: 2, P2: 0x04, Data: rec}
	wantSW(t, xfer(t, c, upd), apdu.SWSecurityStatus, "UPDATE without auth")
	wantSW(t, h.extAuth(t, c, 0x04, "ef-write", false), apdu.SWOK, "auth 04")
	wantSW(t, xfer(t, c, apdu.Command{INS: 0xDC, P1: 2, P2: 0x04, Data: rec[:10]}), apdu.SWWrongLength, "short record")
	bad := append([]byte{0x4E}, rec[1:]...)
	wantSW(t, xfer(t, c, apdu.Command{INS: 0xDC, P1: 2, P2: 0x04, Data: bad}), apdu.SWWrongData, "wrong tag")
	wantSW(t, xfer(t, c, apdu.Command{INS: 0xDC, P1: 9, P2: 0x04, Data: rec}), apdu.SWRecordNotFound, "no record 9")
	wantSW(t, xfer(t, c, upd), apdu.SWOK, "UPDATE RECORD")
	if c.State() != StatePersonalized || !bytes.Equal(c.Record("EF06", 2), rec) {
		t.Fatalf("state %s record % X", c.State(), c.Record("EF06", 2))
	}
	// Reading needs 0A, writing 04: the write does not open reading.
	wantSW(t, send(t, c, "00 B2 02 04 00"), apdu.SWSecurityStatus, "READ without 0A")
	wantSW(t, h.extAuth(t, c, 0x0A, "rkssse", false), apdu.SWOK, "auth 0A")
	r := send(t, c, "00 B2 02 04 00")
	if r.SW != apdu.SWOK || !bytes.Equal(r.Data, rec) {
		t.Fatalf("read back % X %04X", r.Data, uint16(r.SW))
	}
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationBlockTemporary, nil, false)), apdu.SWConditionsNotSatisfied, "transport lock before FINALIZE")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdFinalize, nil, true)), apdu.SWSMDataIncorrect, "FINALIZE bad MAC")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdFinalize, nil, false)), apdu.SWOK, "FINALIZE")
	if c.State() != StateFinalized {
		t.Fatalf("state %s", c.State())
	}
	wantSW(t, h.extAuth(t, c, 0x04, "ef-write", false), apdu.SWOK, "auth 04")
	wantSW(t, xfer(t, c, upd), apdu.SWConditionsNotSatisfied, "UPDATE after FINALIZE")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdFinalize, nil, false)), apdu.SWConditionsNotSatisfied, "FINALIZE twice")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationBlockTemporary, nil, false)), apdu.SWOK, "transport lock")
	if c.State() != StateTransportLocked {
		t.Fatalf("state %s", c.State())
	}
	activate(t, c, h, "123456", "8642")
}

// activate runs the profile's activation: INTERNAL AUTHENTICATE, APPLICATION
// UNBLOCK, CHANGE PIN from the initial PIN.
func activate(t *testing.T, c *Card, h *host, initial, pin string) {
	t.Helper()
	wantSW(t, selectApp(t, c), apdu.SWWarningFileInvalidated, "SELECT transport-locked")
	wantSW(t, xfer(t, c, verifyCmd(t, initial)), apdu.SWConditionsNotSatisfied, "VERIFY while locked")
	factor := bytes.Repeat([]byte{0x5A}, 8) // any process factor (profiles: internal_auth.factor challenge)
	wantSW(t, xfer(t, c, apdu.Command{INS: 0x88, Data: append(factor, make([]byte, 8)...), Ne: 256}), apdu.SWOK, "INTERNAL AUTHENTICATE")
	wantSW(t, xfer(t, c, h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, false)), apdu.SWOK, "APPLICATION UNBLOCK")
	wantSW(t, xfer(t, c, changePINCmd(t, initial, pin)), apdu.SWOK, "CHANGE PIN")
	if c.State() != StateActive || c.PIN() != pin {
		t.Fatalf("state %s PIN %s", c.State(), c.PIN())
	}
}

func TestTransportLockedActivation(t *testing.T) {
	for _, name := range []string{"transport-locked-v2", "transport-locked-v3"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			activate(t, c, newHost(t, c), "123456", "707070")
		})
	}
}

func TestSelect(t *testing.T) {
	// FCI with the algorithm environment.
	for name, env := range map[string]byte{"sample-v1": 0x01, "sample-v3": 0x03} {
		c := newCard(t, name)
		r := selectApp(t, c)
		want := mustHex(t, "6F 19 84 0F "+aidHex+fmt.Sprintf(" A5 06 9F 0C 03 86 01 %02X", env))
		if r.SW != apdu.SWOK || !bytes.Equal(r.Data, want) {
			t.Errorf("%s: FCI % X %04X", name, r.Data, uint16(r.SW))
		}
		// SELECT EF answers 90 00 without data, Le or not (card-reference §9).
		if r := send(t, c, "00 A4 00 00 02 EF 05 00"); r.SW != apdu.SWOK || len(r.Data) != 0 {
			t.Errorf("%s: SELECT EF05: % X %04X", name, r.Data, uint16(r.SW))
		}
		wantSW(t, send(t, c, "00 A4 02 00 02 EF 06"), apdu.SWOK, "EF06 P1 02")
		wantSW(t, send(t, c, "00 A4 02 0C 02 EF 07"), apdu.SWOK, "EF07 P1 02")
		wantSW(t, send(t, c, "00 B0 00 00 10"), apdu.SWSecurityStatus, "EF07 READ BINARY without key")
		wantSW(t, send(t, c, "00 A4 02 00 02 EF 09"), apdu.SWFileNotFound, "EF09")
		wantSW(t, send(t, c, "00 A4 04 00 05 A0 00 00 00 03"), apdu.SWFileNotFound, "other AID")
	}
	// v1: no MF first needed.
	c := newCard(t, "sample-v1")
	wantSW(t, send(t, c, "00 A4 04 00 0F "+aidHex), apdu.SWOK, "SSSE directly")
}

func TestT0(t *testing.T) {
	c := newCard(t, "sample-v2")
	if want := mustHex(t, "3B 68 00 00 53 53 43 32 33 44 45 53"); !bytes.Equal(c.ATR(), want) {
		t.Fatalf("ATR % X", c.ATR())
	}
	// SSSE straight after reset (no 3F00 first), as a case 3 TPDU.
	got := c.Process(mustHex(t, "00 A4 04 00 0F "+aidHex))
	if !bytes.Equal(got, []byte{0x61, 0x1B}) {
		t.Fatalf("SELECT SSSE with Le: % X, want 61 1B", got)
	}
	n := c.APDUCount()
	got = c.Process(mustHex(t, "00 C0 00 00 1B"))
	if len(got) != 0x1B+2 || got[0] != 0x6F || !bytes.Equal(got[len(got)-2:], []byte{0x90, 0x00}) {
		t.Fatalf("GET RESPONSE: % X", got)
	}
	if c.APDUCount() != n {
		t.Fatal("GET RESPONSE counted as an application APDU")
	}
	// VERIFY (case 3) answers its status word directly.
	if got := c.Process(mustHex(t, "00 20 00 00 03 13 57 90")); !bytes.Equal(got, []byte{0x90, 0x00}) {
		t.Fatalf("VERIFY: % X", got)
	}
	// READ RECORD with a wrong Le: 6Cxx.
	if got := c.Process(mustHex(t, "00 A4 02 00 02 EF 05")); !bytes.Equal(got, []byte{0x90, 0x00}) {
		t.Fatalf("SELECT EF05: % X", got)
	}
	if got := c.Process(mustHex(t, "00 B2 02 04 10")); !bytes.Equal(got, []byte{0x6C, 0x03}) {
		t.Fatalf("READ RECORD Le 10: % X", got)
	}
	if got := c.Process(mustHex(t, "00 B2 02 04 03")); !bytes.Equal(got, mustHex(t, "02 01 31 90 00")) {
		t.Fatalf("READ RECORD resent: % X", got)
	}
}

func TestOverrideProfileCodings(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "firmware-profiles", "ss-v1-3des.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := string(src)
	y = strings.Replace(y, `template: "84 18 00 00 04 {mac}"`, `template: "8C 18 00 07 04 {mac}"`, 1)
	y = strings.Replace(y, "name: ss-v1-3des", "name: ss-v1-other", 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ss-v1-other.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := profiles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := Builtin("sample-v1")
	img.Profile = "ss-v1-other"
	img.State = StateBlockedTemporary
	c, err := New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, c)
	wantSW(t, selectApp(t, c), apdu.SWWarningFileInvalidated, "SELECT")
	challenge(t, c)
	wantSW(t, send(t, c, "84 18 00 00 04 00 00 00 00"), apdu.SWCLANotSupported, "old coding")
	wantSW(t, send(t, c, "8C 18 00 00 04 00 00 00 00"), apdu.SWIncorrectP1P2, "new CLA, other P2")
	cmd := h.macCommand(t, c, profiles.CmdApplicationUnblock, nil, false)
	if cmd.CLA != 0x8C || cmd.P2 != 0x07 {
		t.Fatalf("template built % X", cmd.Header())
	}
	wantSW(t, xfer(t, c, cmd), apdu.SWOK, "unblock with the override coding")
	if c.State() != StateActive {
		t.Fatalf("state %s", c.State())
	}
}

func TestImageErrors(t *testing.T) {
	base := func() *Image {
		img, err := Builtin("sample-v1")
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	neg := -1
	seven := 7
	cases := []struct {
		field  string
		mutate func(*Image)
	}{
		{"profile", func(i *Image) { i.Profile = "ss-v9" }},
		{"state", func(i *Image) { i.State = "lost" }},
		{"card_id", func(i *Image) { i.CardID = "6399" }},
		{"holder.name", func(i *Image) { i.Holder.Name = "阿卜杜热合曼·买买提艾力·吐尔逊托合提" }},
		{"holder.ssn", func(i *Image) { i.Holder.SSN = "" }},
		{"holder.ssn", func(i *Image) { i.Holder.SSN = strings.Repeat("1", 19) }},
		{"issue_date", func(i *Image) { i.IssueDate = "20101301" }},
		{"init_org", func(i *Image) { i.InitOrg = "41010A" }},
		{"pin.value", func(i *Image) { i.PIN.Value = "1234" }},
		{"pin.value", func(i *Image) { i.PIN.Value = "12345a" }},
		{"pin.tries_left", func(i *Image) { i.PIN.TriesLeft = &seven }},
		{"pin.tries_left", func(i *Image) { i.PIN.TriesLeft = &neg }},
		{"keys", func(i *Image) { i.Keys = "production" }},
		{"card_type", func(i *Image) { i.State = StateBlank }},
		{"card.an_pad", func(i *Image) { i.Card = &CardQuirks{ANPad: "FF"} }},
		{"card.record_numbers", func(i *Image) { i.Card = &CardQuirks{RecordNumbers: "compact"} }},
		{"card.atr", func(i *Image) { i.Card = &CardQuirks{ATR: "3B 6D 00"} }},
		{"card.ssse_fci", func(i *Image) { i.Card = &CardQuirks{SSSEFCI: "6F 05 84 01"} }},
	}
	for _, tc := range cases {
		img := base()
		tc.mutate(img)
		_, err := New(img, builtinProfiles)
		if err == nil || !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("%s: error %v", tc.field, err)
		}
	}
	// A personalized card may have blank fields.
	img := base()
	img.State = StatePersonalized
	img.Holder.SSN = ""
	if _, err := New(img, builtinProfiles); err != nil {
		t.Errorf("personalized with a blank field: %v", err)
	}
	// Unknown JSON fields are errors.
	if _, err := ParseImage([]byte(`{"profile":"ss-v1-3des","state":"active","card_id":"00","pin":{"value":"1"},"colour":"red"}`)); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown field: %v", err)
	}
	if !IsImage([]byte(`{"profile":"x"}`)) || IsImage(engine.DefaultImageJSON()) {
		t.Error("IsImage")
	}
	if _, err := Builtin("nope"); err == nil {
		t.Error("Builtin(nope)")
	}
	// LoadImageFile reads what BuiltinJSON gives.
	b, _ := BuiltinJSON("sample-v3")
	p := filepath.Join(t.TempDir(), "card.json")
	os.WriteFile(p, b, 0o644)
	if img, err := LoadImageFile(p); err != nil || img.Holder.Name != "李小龙" {
		t.Errorf("LoadImageFile: %v", err)
	}
}

func TestIndependentCards(t *testing.T) {
	img, _ := Builtin("sample-v1")
	a, _ := New(img, builtinProfiles)
	b, _ := New(img, builtinProfiles)
	selectApp(t, a)
	xfer(t, a, verifyCmd(t, "000000"))
	if a.Tries() != 2 || b.Tries() != 3 {
		t.Fatalf("tries %d %d", a.Tries(), b.Tries())
	}
}

func TestConcurrentUse(t *testing.T) {
	c := newCard(t, "sample-v2")
	cmds := [][]byte{
		mustHex(t, "00 A4 00 00 02 3F 00"),
		mustHex(t, "00 A4 04 00 0F "+aidHex),
		mustHex(t, "00 20 00 00 03 13 57 90"),
		mustHex(t, "00 84 00 00 08"),
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 200 {
			for _, cmd := range cmds {
				c.Process(cmd)
			}
			c.Reset()
		}
	}()
	go func() {
		defer wg.Done()
		for range 200 {
			_ = c.State()
			_ = c.PIN()
			_ = c.Tries()
			_ = c.Record("EF06", 2)
			_ = c.APDUCount()
			_ = c.KeyTries(0x0A)
		}
	}()
	wg.Wait()
	if c.APDUCount() != 800 {
		t.Fatalf("APDUCount %d", c.APDUCount())
	}
}

// TestReadBasicInfoAPDUs reads the basic information the way the host does
// and checks the APDU count against the profile's read_info_min_apdus (the
// T=0 transport's GET RESPONSEs not counted).
func TestReadBasicInfoAPDUs(t *testing.T) {
	for _, name := range []string{"sample-v1", "sample-v2", "sample-v3"} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t, name)
			h := newHost(t, c)
			p := c.Profile()
			start := c.APDUCount()
			selectApp(t, c)
			selected := ""
			authed := map[byte]bool{}
			got := map[string]string{}
			for _, item := range profiles.BasicInfoItems {
				file, rec, ok := p.Record(item)
				if !ok {
					continue
				}
				if file != selected {
					f := p.Files[file]
					selectEF(t, c, fmt.Sprintf("%02X%02X", f.FID[0], f.FID[1]))
					selected = file
				}
				if acc, _ := p.ReadAccess(item); acc.Kind == profiles.AccessKey && !authed[acc.Key] {
					kname := c.keyByIndex[acc.Key]
					wantSW(t, h.extAuth(t, c, acc.Key, kname, false), apdu.SWOK, "EXTERNAL AUTHENTICATE")
					authed[acc.Key] = true
				}
				r := send(t, c, fmt.Sprintf("00 B2 %02X 04 00", rec.Number))
				wantSW(t, r, apdu.SWOK, item)
				got[item], _ = records.Decode(rec.Type, r.Data[2:])
			}
			if n := c.APDUCount() - start; n != p.ReadInfoMinAPDUs {
				t.Errorf("%d APDUs, profile says %d", n, p.ReadInfoMinAPDUs)
			}
			if got["card_number"] != c.Image().CardNumber || got["name"]+got["name_ext"] != c.Image().Holder.Name {
				t.Errorf("read %v", got)
			}
		})
	}
}
