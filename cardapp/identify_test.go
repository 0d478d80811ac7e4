package cardapp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
)

// newImageBed is newBed for an image the test shaped itself.
func newImageBed(t *testing.T, img *ssse.Image) *bed {
	t.Helper()
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	vc := pcsctest.StartCard(t, sim)
	vc.Slot.SetLogf(rec.logf)
	_, card := vc.Connect(t, rec.trace)
	return &bed{t: t, vc: vc, sim: sim, card: card, rec: rec, set: set,
		opts: cardapp.Options{Keys: keys.NewTestKeystore()}}
}

func builtinImage(t *testing.T, name string) *ssse.Image {
	t.Helper()
	img, err := ssse.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// headers are the CLA INS P1 P2 of the commands the recorder saw, GET
// RESPONSE left out (the transport's).
func (r *recorder) headers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if !strings.HasPrefix(l, "> ") || strings.Contains(l, "(GET RESPONSE)") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(l, "> "))
		if len(f) >= 4 {
			out = append(out, strings.Join(f[:4], " "))
		}
	}
	return out
}

func (r *recorder) clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines, r.apdus, r.getRes, r.sws = nil, 0, 0, nil
}

// Issue 7's "done when": a T=0 card whose ATR matches no profile, whose
// name is padded with spaces and whose EF06 records are numbered 1..6
// without a gap (the real 1.00 card of the public Mingwah trace, with a
// fictional holder and ATR bytes) is identified and read byte-exact,
// through pcscd, in the APDUs public readers send: SELECT SSSE straight
// away, READ RECORD by identifier and SFI.
func TestRealV1T0CardReadByteExact(t *testing.T) {
	b := newBed(t, "real-v1-t0")
	img := builtinImage(t, "real-v1-t0")
	if b.card.Protocol() != pcsc.ProtocolT0 {
		t.Fatalf("protocol %v, want T=0", b.card.Protocol())
	}
	if got := b.set.MatchATR(b.card.ATR()); len(got) != 0 {
		t.Fatalf("the card's ATR matches %s: the test needs one that matches no profile", got[0].Name)
	}
	b.rec.clear()
	b.opts.Now = func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local) }
	var id *cardapp.Identification
	var info *cardapp.BasicInfo
	err := b.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, b.card, b.set, b.opts)
		if err != nil {
			return err
		}
		id = app.Identification()
		info, err = app.ReadFullInfo(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantID := cardapp.Identification{Profile: "ss-v1-3des", SpecVersion: "1.00", Algorithm: "3DES", AlgorithmFromCard: false,
		ATR: fmt.Sprintf("%X", b.card.ATR()), ATRKnown: false,
		Reason: "chosen by spec version 1.00 and algorithm 3DES (no 9F0C in the SELECT answer); its ATR matches no profile"}
	if *id != wantID {
		t.Fatalf("identification\n %+v\nwant\n %+v", *id, wantID)
	}
	want := cardapp.BasicInfo{Profile: "ss-v1-3des", SpecVersion: "1.00", Algorithm: "3DES",
		CardID: "639900D1560000050A1B2C3D4E5F6071", RegionCode: "639900", IssueDate: "20190601", ExpiryDate: "20290601",
		CardNumber: "A39990007", SSN: img.Holder.SSN, Name: "王五", ATRHistorical: fmt.Sprintf("%X", b.card.ATR()[4:]),
		State: cardapp.StateActive, GenuineChecked: true}
	holder := cardapp.Holder{CardType: "1", InitOrg: "639900000001", Gender: "1", GenderName: "male", Nationality: "01", Birthplace: "639900", BirthDate: "19750505"}
	got := *info
	got.Holder = nil
	if got != want || info.Holder == nil || *info.Holder != holder {
		t.Fatalf("read\n %s %+v\nwant\n %s %+v", fieldsOf(got), info.Holder, fieldsOf(want), holder)
	}
	// The APDUs: SELECT SSSE, then every record by identifier and SFI (P2 28
	// for EF05, 30 for EF06), no SELECT EF, no 3F00; then the genuineness
	// check.
	wantHdr := []string{"00 A4 04 00", "00 B2 03 28", "00 B2 01 28", "00 B2 02 28", "00 B2 04 28", "00 B2 05 28", "00 B2 06 28", "00 B2 07 28",
		"00 B2 08 30", "00 B2 09 30", "00 B2 0A 30", "00 B2 0B 30", "00 B2 0C 30", "00 B2 0D 30", "00 84 00 00", "00 88 00 00"}
	if h := b.rec.headers(); strings.Join(h, ",") != strings.Join(wantHdr, ",") {
		t.Fatalf("APDUs\n %s\nwant\n %s", strings.Join(h, ", "), strings.Join(wantHdr, ", "))
	}
	if b.rec.getRes == 0 {
		t.Fatal("the T=0 card's answers came without GET RESPONSE")
	}
}

// fieldsOf prints a BasicInfo's fields for a test failure (BasicInfo's own
// formatting hides the ID number).
func fieldsOf(b cardapp.BasicInfo) string {
	return fmt.Sprintf("{%s %s %s %s %s %s %s %s ssn:%d chars %q %s %s %v}", b.Profile, b.SpecVersion, b.Algorithm, b.CardID, b.RegionCode,
		b.IssueDate, b.ExpiryDate, b.CardNumber, len(b.SSN), b.Name, b.ATRHistorical, b.State, b.GenuineChecked)
}

// With no key provider the read goes on without INTERNAL AUTHENTICATE and
// says so; on a 3.0 card, whose EF06 needs RKSSSE, it stops with −2203.
func TestReadWithoutKeyProvider(t *testing.T) {
	for _, name := range []string{"sample-v1", "sample-v2"} {
		t.Run(name, func(t *testing.T) {
			b := newBed(t, name)
			b.opts.Keys = nil
			b.rec.reset()
			info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := b.set.Get(info.Profile)
			if info.GenuineChecked || info.SSN == "" {
				t.Fatalf("genuine_checked %v", info.GenuineChecked)
			}
			if n := b.rec.reset(); n != p.ReadInfoMinAPDUs-profiles.InternalAuthAPDUs {
				t.Fatalf("%d APDUs, want %d", n, p.ReadInfoMinAPDUs-profiles.InternalAuthAPDUs)
			}
			for _, h := range b.rec.headers() {
				if strings.HasPrefix(h, "00 88") {
					t.Fatal("INTERNAL AUTHENTICATE sent without a key provider")
				}
			}
		})
	}
	b := newBed(t, "sample-v3")
	b.opts.Keys = keys.None
	_, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
	if !errors.Is(err, cardapp.ErrNoReadKey) || cardapp.LegacyCode(err) != -2203 {
		t.Fatalf("v3 without keys: %v (code %d)", err, cardapp.LegacyCode(err))
	}
}

// A 3.0 card's EF05 (card number, dates) is read before RKSSSE; only EF06
// waits for EXTERNAL AUTHENTICATE 0A (card-reference §9). A blank 3.0 card
// shows its dates.
func TestV3ReadsEF05BeforeRKSSSE(t *testing.T) {
	b := newBed(t, "sample-v3")
	b.rec.clear()
	if _, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts); err != nil {
		t.Fatal(err)
	}
	h := strings.Join(b.rec.headers(), ",")
	ext := strings.Index(h, "00 82 00 0A")
	if ext < 0 || strings.Contains(h[ext:], " 28") || !strings.Contains(h[:ext], "00 B2 07 28") || !strings.Contains(h[ext:], "00 B2 08 30") {
		t.Fatalf("order: %s", h)
	}

	// Initialized with its dates (EF05 written), no holder yet (EF06 blank):
	// the standard's blank 3.0 example shows the dates.
	img := builtinImage(t, "blank-v3")
	img.State = ssse.StatePersonalized
	img.IssueDate, img.ExpiryDate = "20211203", "20311202"
	bb := newImageBed(t, img)
	info, err := cardapp.ReadBasicInfo(context.Background(), bb.card, bb.set, bb.opts)
	if err != nil {
		t.Fatal(err)
	}
	s := info.IReadCardBas(terminalNo, deviceNo)
	want := fmt.Sprintf("110100|||%X||53534333534D34|3.00|20211203|20311202|%s|%s|", bb.sim.CardID(), terminalNo, deviceNo)
	if s != want || info.State != cardapp.StateBlank {
		t.Fatalf("blank 3.0: %s (%s)\nwant %s", s, info.State, want)
	}
}

// iReadCardBas codes through pcscd (issue 7 §5): a forged card −21, a
// permanently blocked application −37635 (9303), no card −2; a temporarily
// blocked application reads, says so, and carries −25219 (6283).
func TestIReadCardBasCodes(t *testing.T) {
	t.Run("forged", func(t *testing.T) {
		b := newBed(t, "sample-v2")
		other, err := keys.NewSoftwareKeystore("other issuer", otherKeys()...)
		if err != nil {
			t.Fatal(err)
		}
		b.opts.Keys = other
		info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
		if info != nil || !errors.Is(err, cardapp.ErrCardNotGenuine) || cardapp.LegacyCode(err) != -21 {
			t.Fatalf("forged: %v, code %d", err, cardapp.LegacyCode(err))
		}
	})
	t.Run("blocked permanently", func(t *testing.T) {
		b := newBed(t, "locked-v2")
		_, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
		if cardapp.LegacyCode(err) != -37635 || cardapp.StateOf(err) != cardapp.StateBlockedPerm {
			t.Fatalf("9303: %v, code %d, state %s", err, cardapp.LegacyCode(err), cardapp.StateOf(err))
		}
	})
	t.Run("blocked temporarily", func(t *testing.T) {
		img := builtinImage(t, "sample-v2")
		img.State = ssse.StateBlockedTemporary
		b := newImageBed(t, img)
		info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != cardapp.StateBlockedTemp || cardapp.LegacyCode(info.Err()) != -25219 || info.CardNumber != "S44030012" {
			t.Fatalf("6283: state %s, code %d", info.State, cardapp.LegacyCode(info.Err()))
		}
		var v *cardapp.Verification
		if err := b.op(func(ctx context.Context, app *cardapp.App) (err error) {
			v, err = app.VerifyCard(ctx, time.Now())
			return
		}); err != nil {
			t.Fatal(err)
		}
		if !v.Genuine || v.State != cardapp.StateBlockedTemp {
			t.Fatalf("verify: %+v", v)
		}
	})
	t.Run("no card", func(t *testing.T) {
		b := newBed(t, "sample-v1")
		b.vc.Slot.Remove()
		if err := b.vc.WaitPresence(false, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		_, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
		if cardapp.LegacyCode(err) != -2 {
			t.Fatalf("no card: %v, code %d", err, cardapp.LegacyCode(err))
		}
	})
}

// A BasicInfo never prints the full ID number or the name through fmt,
// whatever the verb or wrapping.
func TestBasicInfoFormatHidesSSN(t *testing.T) {
	ssn := "111111198101011110"
	info := &cardapp.BasicInfo{Profile: "ss-v1-3des", SpecVersion: "1.00", CardID: "639900D15600000500BF7C7A48FB4966", SSN: ssn, Name: "张三"}
	type wrap struct{ I cardapp.BasicInfo }
	for _, s := range []string{
		fmt.Sprintf("%v", info), fmt.Sprintf("%+v", info), fmt.Sprintf("%#v", info), fmt.Sprintf("%s", info), fmt.Sprintf("%q", info),
		fmt.Sprintf("%v", *info), fmt.Sprintf("%+v", *info), fmt.Sprintf("%#v", *info), fmt.Sprint(info), fmt.Sprintf("%+v", wrap{*info}),
		fmt.Sprintf("%v", []*cardapp.BasicInfo{info}), fmt.Errorf("read %v", info).Error(),
	} {
		if strings.Contains(s, ssn) || strings.Contains(s, "张三") || !strings.Contains(s, "1111************10") {
			t.Fatalf("%q", s)
		}
	}
}

// writeV2MF writes an override profile "ss-v2-mf": the v2 card OS that
// needs 3F00 selected first (one vendor's, card-reference §9), with or
// without an ATR pattern of its own.
func writeV2MF(t *testing.T, withATR bool) *profiles.Set {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "firmware-profiles", "ss-v2-3des-t0.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, r := range [][2]string{
		{"name: ss-v2-3des-t0", "name: ss-v2-mf"},
		{"  mf_first: false ", "  mf_first: true "},
		{"quirks: [ef_select_p1_02, t0_get_response]", "quirks: [mf_select_first, ef_select_p1_02, t0_get_response]"},
		{"read_info_min_apdus: 11", "read_info_min_apdus: 12"},
		{`pattern: "3B 68 00 00 53 53 43 32 33 44 45 53"`, `pattern: "3B 68 00 00 53 53 43 32 4D 46 31 53"`},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("v2 profile lacks %q", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	if !withATR {
		s = s[:strings.Index(s, "\natr:\n")+1] + s[strings.Index(s, "\nprotocol:")+1:]
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ss-v2-mf.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := profiles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// A card OS that needs 3F00 first, unknown by its ATR: SELECT SSSE answers
// 6A82, the station selects 3F00 and tries again once, and keeps the
// profile that selects that way.
func TestIdentifyRetriesWithMFFirst(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	cardSet, hostSet := writeV2MF(t, true), writeV2MF(t, false)
	img := builtinImage(t, "sample-v2")
	img.Profile = "ss-v2-mf"
	sim, err := ssse.New(img, cardSet)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	vc := pcsctest.StartCard(t, sim)
	_, card := vc.Connect(t, rec.trace)
	var info *cardapp.BasicInfo
	var id *cardapp.Identification
	err = card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, card, hostSet, cardapp.Options{Keys: keys.NewTestKeystore()})
		if err != nil {
			return err
		}
		id = app.Identification()
		info, err = app.ReadBasicInfo(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if id.Profile != "ss-v2-mf" || id.ATRKnown || info.CardNumber != "S44030012" || !info.GenuineChecked {
		t.Fatalf("%+v %v", id, info)
	}
	h := rec.headers()
	if len(h) < 4 || strings.Join(h[:4], ",") != "00 A4 04 00,00 A4 00 00,00 A4 04 00,00 B2 03 28" {
		t.Fatalf("APDUs %v", h)
	}
}
