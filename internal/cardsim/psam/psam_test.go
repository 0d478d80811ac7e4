package psam_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ssstation/cardapp/keys"
	hostpsam "ssstation/cardapp/keys/psam"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/psam"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/atr"
)

var algs = []keys.Algorithm{keys.TDES, keys.SM4}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(7*i)
	}
	return b
}

// paths are the diversification paths every key is checked with: none,
// two levels, and the PSAM's maximum of three.
var paths = map[string][][]byte{
	"no path":  nil,
	"2 levels": {seq(8, 0x11), seq(8, 0xA0)},
	"3 levels": {seq(8, 0x01), seq(8, 0x52), seq(8, 0xE3)},
}

// The virtual PSAM, driven through the host Provider, gives the same bytes
// as the software keystore for every key name and algorithm.
func TestMatchesSoftwareKeystore(t *testing.T) {
	ctx := context.Background()
	soft := keys.NewTestKeystore()
	card := psam.Builtin()
	prov := hostpsam.New(card.Conn())
	for _, alg := range algs {
		bs := alg.BlockSize()
		for _, name := range keys.KnownKeyNames() {
			for pname, path := range paths {
				req := keys.Request{Key: name, Algorithm: alg, Path: path}
				t.Run(fmt.Sprintf("%s/%s/%s", alg, name, pname), func(t *testing.T) {
					for _, data := range [][]byte{seq(bs, 0x30), seq(2*bs, 0x42), seq(16, 0), seq(240, 3)} {
						want, err := soft.Encrypt(ctx, req, data)
						if err != nil {
							t.Fatal(err)
						}
						got, err := prov.Encrypt(ctx, req, data)
						if err != nil {
							t.Fatalf("PSAM encrypt %d bytes: %v", len(data), err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("encrypt %d bytes: PSAM %X, keystore %X", len(data), got, want)
						}
					}
					for _, c := range []struct {
						name    string
						iv, msg []byte
					}{
						{"zero IV", nil, seq(13, 0x20)},
						{"non-zero IV, 31-byte message", seq(bs, 0x9C), seq(31, 0x05)},
						{"4-byte IV (challenge)", seq(4, 0x77), seq(21, 0x61)},
						{"empty message", seq(bs, 0x01), nil},
						{"block-aligned message", seq(bs, 0x33), seq(2*bs, 0x44)},
						{"chained (300 bytes)", seq(bs, 0x5A), seq(300, 0x09)},
					} {
						want, err := soft.MAC(ctx, req, c.iv, c.msg)
						if err != nil {
							t.Fatal(err)
						}
						got, err := prov.MAC(ctx, req, c.iv, c.msg)
						if err != nil {
							t.Fatalf("PSAM MAC (%s): %v", c.name, err)
						}
						if !bytes.Equal(got, want) || len(got) != keys.MACSize {
							t.Fatalf("MAC (%s): PSAM %X, keystore %X", c.name, got, want)
						}
					}
				})
			}
		}
	}
	if card.HasSession() {
		t.Fatal("a session key outlived its CIPHER DATA")
	}
}

// An image with explicit keys holds exactly those keys.
func TestExplicitKeys(t *testing.T) {
	ctx := context.Background()
	key := seq(16, 0x13)
	img, err := psam.ParseImage([]byte(`{"serial": "123456789012", "keys": [
		{"name": "rkssse", "algorithm": "3DES", "key": "` + hex.EncodeToString(key) + `"},
		{"name": "ef-write", "algorithm": "sm4", "key": "` + strings.ToUpper(hex.EncodeToString(key)) + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	card, err := psam.New(img)
	if err != nil {
		t.Fatal(err)
	}
	if got := card.KeyIDs(); len(got) != 2 {
		t.Fatalf("keys %v", got)
	}
	soft, err := keys.NewSoftwareKeystore("test", keys.Entry{Name: keys.KeyRKSSSE, Algorithm: keys.TDES, Key: key},
		keys.Entry{Name: keys.KeyEFWrite, Algorithm: keys.SM4, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	prov := hostpsam.New(card.Conn())
	for _, req := range []keys.Request{
		{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: paths["2 levels"]},
		{Key: keys.KeyEFWrite, Algorithm: keys.SM4},
	} {
		want, _ := soft.MAC(ctx, req, seq(4, 1), seq(31, 2))
		got, err := prov.MAC(ctx, req, seq(4, 1), seq(31, 2))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: PSAM %X %v, keystore %X", req, got, err, want)
		}
	}
	_, err = prov.Encrypt(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.SM4}, seq(16, 0))
	if !errors.Is(err, keys.ErrKeyNotFound) {
		t.Fatalf("a key the image lacks: %v", err)
	}
	var sw apdu.StatusWord
	if !errors.As(err, &sw) || sw != apdu.SWRefDataNotFound {
		t.Fatalf("want the 6A88 in the error chain: %v", err)
	}
	sn, err := prov.SerialNumber(ctx)
	if err != nil || sn != "123456789012" {
		t.Fatalf("serial %q %v", sn, err)
	}
}

// A custom key table in the image moves the keys; a host with the same
// table finds them, a host with the default table does not.
func TestImageKeyTable(t *testing.T) {
	ctx := context.Background()
	img, err := psam.ParseImage([]byte(`{"keys": "test", "key_table": {"keys": [
		{"name": "rkssse", "algorithm": "3DES", "usage": "0x41", "index": "07"},
		{"name": "ef-write", "algorithm": "SM4", "usage": "42", "index": "7"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	card, err := psam.New(img)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(card.KeyIDs()); n != 2 {
		t.Fatalf("%d keys, want the 2 the table maps", n)
	}
	req := keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: paths["2 levels"]}
	want, _ := keys.NewTestKeystore().Encrypt(ctx, req, seq(16, 9))
	got, err := hostpsam.New(card.Conn(), hostpsam.WithKeyTable(card.KeyTable())).Encrypt(ctx, req, seq(16, 9))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("same table: %X %v, want %X", got, err, want)
	}
	if _, err := hostpsam.New(card.Conn()).Encrypt(ctx, req, seq(16, 9)); !errors.Is(err, keys.ErrKeyNotFound) {
		t.Fatalf("default table on a PSAM with another one: %v", err)
	}
}

func TestImageErrors(t *testing.T) {
	secret := "00112233445566778899AABBCCDDEEF"
	for name, js := range map[string]string{
		"no keys":          `{"serial": "000000000001"}`,
		"other keys word":  `{"keys": "production"}`,
		"unknown field":    `{"keys": "test", "pin": "1234"}`,
		"short serial":     `{"keys": "test", "serial": "0001"}`,
		"hex serial":       `{"keys": "test", "serial": "00000000000A"}`,
		"odd key":          `{"keys": [{"name": "rkssse", "algorithm": "3DES", "key": "` + secret + `"}]}`,
		"short key":        `{"keys": [{"name": "rkssse", "algorithm": "3DES", "key": "` + secret[:20] + `"}]}`,
		"bad algorithm":    `{"keys": [{"name": "rkssse", "algorithm": "AES", "key": "` + secret + `0"}]}`,
		"unknown key name": `{"keys": [{"name": "master", "algorithm": "SM4", "key": "` + secret + `0"}]}`,
		"twice": `{"keys": [{"name": "rkssse", "algorithm": "SM4", "key": "` + secret + `0"},
			{"name": "rkssse", "algorithm": "SM4", "key": "` + secret + `0"}]}`,
		"bad table": `{"keys": "test", "key_table": {"keys": [
			{"name": "rkssse", "algorithm": "3DES", "usage": "31", "index": "01"},
			{"name": "ef-write", "algorithm": "3DES", "usage": "31", "index": "01"}]}}`,
		"trailing data": `{"keys": "test"} {}`,
	} {
		img, err := psam.ParseImage([]byte(js))
		if err == nil {
			_, err = psam.New(img)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(strings.ToUpper(err.Error()), secret[:12]) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

func TestBuiltinImageJSON(t *testing.T) {
	img, err := psam.ParseImage(psam.BuiltinImageJSON())
	if err != nil {
		t.Fatal(err)
	}
	card, err := psam.New(img)
	if err != nil {
		t.Fatal(err)
	}
	if card.Serial() != psam.DefaultSerial || len(card.KeyIDs()) != len(keys.TestKeys()) {
		t.Fatalf("%v, keys %v", card, card.KeyIDs())
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "psam.json")
	if err := os.WriteFile(p, []byte(`{"serial": "000000000042", "keys": "test"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err = psam.LoadImage(p)
	if err != nil || img.Serial != "000000000042" {
		t.Fatalf("%+v %v", img, err)
	}
	// Keys marshal back to what they were read from.
	b, _ := json.Marshal(img)
	if !strings.Contains(string(b), `"keys":"test"`) {
		t.Fatalf("marshal: %s", b)
	}
}

func TestATR(t *testing.T) {
	a := psam.Builtin().ATR()
	info, err := engine.ParseATR(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Protocols) != 1 || info.Protocols[0] != 1 || !info.HasTCK || string(info.Historical) != "SSPSAM" {
		t.Fatalf("%+v", info)
	}
	if _, err := atr.Parse(a); err != nil {
		t.Fatalf("pcsc/atr: %v", err)
	}
	if got := strings.ToUpper(hex.EncodeToString(a)); got != "3B868131FE4553535053414D82" {
		t.Fatalf("ATR %s", got)
	}
	def, _ := engine.New(nil)
	if bytes.Equal(def.ATR(), a) {
		t.Fatal("the PSAM's ATR is the SSSE card's")
	}
}

// tx sends one raw APDU (hex) to the card and returns the answer as hex.
func tx(t *testing.T, c *psam.Card, cmd string) string {
	t.Helper()
	raw, err := apdu.ParseHex(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(c.Process(raw)))
}

const selectPSAM = "00A4040009D1560000055053414D"

func TestCommands(t *testing.T) {
	c := psam.Builtin()
	u, i, ok := hostpsam.Lookup(keys.KeyRKSSSE, keys.TDES)
	if !ok {
		t.Fatal("rkssse/3DES not in the default table")
	}
	initCmd := fmt.Sprintf("801A%02X%02X08%s", u, i, "1122334455667788")
	initSM4 := fmt.Sprintf("801A%02X%02X", u, hostpsam.IndexSM4)
	steps := []struct{ name, cmd, want string }{
		{"INIT before SELECT", initCmd, "6985"},
		{"SELECT other AID", "00A4040005A000000003", "6A82"},
		{"SELECT no data", "00A40400", "6700"},
		{"SELECT bad P1", "00A4000002 3F00", "6A86"},
		{"SELECT", selectPSAM, "9000"},
		{"SELECT with FCI", selectPSAM + "00", "6F0B8409D1560000055053414D9000"},
		{"serial", "00B0960006", "0000000000019000"},
		{"serial, Le 00", "00B0960000", "0000000000019000"},
		{"serial, offset", "00B0960402", "00019000"},
		{"serial, Le too long", "00B0960008", "6C06"},
		{"serial, no Le", "00B09600", "6700"},
		{"other SFI", "00B0950006", "6A82"},
		{"no current EF", "00B0000006", "6986"},
		{"CIPHER without INIT", "80FA0000080102030405060708", "6985"},
		{"INIT unknown usage", "801A7F0108" + "1122334455667788", "6A88"},
		{"INIT unknown index", fmt.Sprintf("801A%02X0908%s", u, "1122334455667788"), "6A88"},
		{"INIT 7-byte factor", fmt.Sprintf("801A%02X%02X07%s", u, i, "11223344556677"), "6700"},
		{"INIT 4 levels", fmt.Sprintf("801A%02X%02X20%s", u, i, strings.Repeat("11", 32)), "6700"},
		{"INIT wrong class", fmt.Sprintf("001A%02X%02X", u, i), "6E00"},
		{"INIT", initCmd, "9000"},
		{"CIPHER encrypt 7 bytes", "80FA00000701020304050607", "6700"},
		{"CIPHER after a failed use", "80FA0000080102030405060708", "6985"},
		{"INIT again", initCmd, "9000"},
		{"CIPHER MAC shorter than IV", "80FA05000401020304", "6700"},
		{"INIT, SM4", initSM4, "9000"},
		{"CIPHER encrypt 8 bytes on SM4", "80FA0000080102030405060708", "6700"},
		{"INIT 3", initCmd, "9000"},
		{"CIPHER bad P1", "80FA0300080102030405060708", "6A86"},
		{"INIT 4", initCmd, "9000"},
		{"CIPHER bad P2", "80FA0001080102030405060708", "6A86"},
		{"INIT 5", initCmd, "9000"},
		{"CIPHER no data", "80FA000008", "6700"},
		{"unknown INS", "80CA000000", "6D00"},
		{"malformed", "80FA00000901", "6700"},
	}
	for _, s := range steps {
		if got := tx(t, c, strings.ReplaceAll(s.cmd, " ", "")); got != s.want {
			t.Fatalf("%s: %s answered %s, want %s", s.name, s.cmd, got, s.want)
		}
	}
	if n := c.APDUCount(); n != uint64(len(steps)) {
		t.Fatalf("APDUCount %d, want %d", n, len(steps))
	}
}

// The session key serves one CIPHER DATA and does not survive a reset or
// a new SELECT.
func TestSessionLifetime(t *testing.T) {
	c := psam.Builtin()
	u, i, _ := hostpsam.Lookup(keys.KeyEFWrite, keys.TDES)
	initCmd := fmt.Sprintf("801A%02X%02X", u, i)
	cipher := "80FA000008010203040506070808"
	tx(t, c, selectPSAM)
	if got := tx(t, c, initCmd); got != "9000" {
		t.Fatal(got)
	}
	if got := tx(t, c, cipher); !strings.HasSuffix(got, "9000") || len(got) != 20 {
		t.Fatalf("first use: %s", got)
	}
	if got := tx(t, c, cipher); got != "6985" {
		t.Fatalf("second use: %s", got)
	}

	tx(t, c, initCmd)
	c.Reset()
	if c.HasSession() {
		t.Fatal("session survived reset")
	}
	if got := tx(t, c, initCmd); got != "6985" {
		t.Fatalf("INIT after reset, before SELECT: %s", got)
	}
	tx(t, c, selectPSAM)
	if got := tx(t, c, cipher); got != "6985" {
		t.Fatalf("CIPHER after reset: %s", got)
	}

	tx(t, c, initCmd)
	tx(t, c, selectPSAM)
	if got := tx(t, c, cipher); got != "6985" {
		t.Fatalf("CIPHER after re-SELECT: %s", got)
	}

	// A command chain interrupted by another command is dropped.
	tx(t, c, initCmd)
	if got := tx(t, c, "90FA000008"+"0102030405060708"); got != "9000" {
		t.Fatalf("chain part: %s", got)
	}
	tx(t, c, "00B0960006")
	want := tx(t, c, "80FA000008"+"0102030405060708")
	if !strings.HasSuffix(want, "9000") || len(want) != 20 {
		t.Fatalf("after an abandoned chain the final part alone is encrypted: %s", want)
	}
}

// The host provider marks every APDU of an operation sensitive, and runs
// SELECT once per transaction.
func TestProviderAPDUs(t *testing.T) {
	ctx := context.Background()
	c := psam.Builtin()
	conn := c.Conn()
	var sent []apdu.Command
	conn.Observe = func(cmd apdu.Command) { sent = append(sent, cmd) }
	prov := hostpsam.New(conn)
	req := keys.Request{Key: keys.KeyPINReload, Algorithm: keys.SM4, Path: paths["2 levels"]}
	if _, err := prov.MAC(ctx, req, nil, seq(10, 1)); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 3 || sent[0].INS != 0xA4 || sent[1].INS != 0x1A || sent[2].INS != 0xFA {
		t.Fatalf("sent %v", sent)
	}
	for _, cmd := range sent {
		if !cmd.Sensitive {
			t.Fatalf("%s is not marked sensitive", cmd.Label())
		}
	}
	sent = nil
	err := prov.Do(ctx, func(ctx context.Context, s *hostpsam.Session) error {
		if _, err := s.Encrypt(ctx, req, seq(16, 0)); err != nil {
			return err
		}
		_, err := s.MAC(ctx, req, nil, seq(3, 0))
		return err
	})
	if err != nil || len(sent) != 5 {
		t.Fatalf("Do: %v, %d APDUs, want 5 (one SELECT)", err, len(sent))
	}
	before := c.APDUCount()
	if _, err := prov.SerialNumber(ctx); err != nil {
		t.Fatal(err)
	}
	if d := c.APDUCount() - before; d != 2 {
		t.Fatalf("SerialNumber took %d APDUs, want SELECT + READ BINARY", d)
	}
}
