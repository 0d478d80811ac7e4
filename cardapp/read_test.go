package cardapp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
)

// The three sample cards read to exact values and exact iReadCardBas
// strings, through pcscd + vpcd + cardsim, in the profile's minimum
// number of APDUs: the standard's procedure, INTERNAL AUTHENTICATE
// included since a key provider is configured. The holder's ID number
// comes from the card image (the card's data), so no full ID number sits
// in this file.
func TestReadSampleCards(t *testing.T) {
	cases := []struct {
		image string
		want  cardapp.BasicInfo
		bas   string // %s: the ID number
	}{
		{"sample-v1", cardapp.BasicInfo{Profile: "ss-v1-3des", SpecVersion: "1.00", Algorithm: "3DES",
			CardID: "639900D15600000500BF7C7A48FB4966", RegionCode: "639900", IssueDate: "20101001", ExpiryDate: "20201001",
			CardNumber: "X00000019", Name: "张三", ATRHistorical: "5353433133444553", State: cardapp.StateExpired, GenuineChecked: true},
			"639900|%s|X00000019|639900D15600000500BF7C7A48FB4966|张三|5353433133444553|1.00|20101001|20201001|410100813475|终端设备号|"},
		{"sample-v2", cardapp.BasicInfo{Profile: "ss-v2-3des-t0", SpecVersion: "2.00", Algorithm: "3DES",
			CardID: "440300D1560000050102030405060708", RegionCode: "440300", IssueDate: "20240315", ExpiryDate: "20340315",
			CardNumber: "S44030012", Name: "阿卜杜热合曼·买买提艾力·吐尔逊托合提", ATRHistorical: "5353433233444553", State: cardapp.StateActive, GenuineChecked: true},
			"440300|%s|S44030012|440300D1560000050102030405060708|阿卜杜热合曼·买买提艾力·吐尔逊托合提|5353433233444553|2.00|20240315|20340315|410100813475|终端设备号|"},
		{"sample-v3", cardapp.BasicInfo{Profile: "ss-v3-sm4", SpecVersion: "3.00", Algorithm: "SM4",
			CardID: "110100D156000005A1B2C3D4E5F60718", RegionCode: "110100", IssueDate: "20250101", ExpiryDate: "20350101",
			CardNumber: "B11010034", Name: "李小龙", ATRHistorical: "53534333534D34", State: cardapp.StateActive, GenuineChecked: true},
			"110100|%s|B11010034|110100D156000005A1B2C3D4E5F60718|李小龙|53534333534D34|3.00|20250101|20350101|410100813475|终端设备号|"},
	}
	for _, c := range cases {
		t.Run(c.image, func(t *testing.T) {
			b := newBed(t, c.image)
			img, _ := ssse.Builtin(c.image)
			c.want.SSN = img.Holder.SSN
			b.rec.reset()
			b.opts.Now = func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local) }
			info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
			if err != nil {
				t.Fatal(err)
			}
			apdus := b.rec.apdus
			if *info != c.want {
				t.Fatalf("read\n %+v\nwant\n %+v", *info, c.want)
			}
			if got, want := info.IReadCardBas(terminalNo, deviceNo), fmt.Sprintf(c.bas, img.Holder.SSN); got != want {
				t.Fatalf("iReadCardBas\n %s\nwant\n %s", got, want)
			}
			p, _ := b.set.Get(c.want.Profile)
			if apdus > p.ReadInfoMinAPDUs {
				t.Fatalf("read-info took %d APDUs, the profile's minimum is %d", apdus, p.ReadInfoMinAPDUs)
			}
			if apdus != p.ReadInfoMinAPDUs {
				t.Fatalf("read-info took %d APDUs, fewer than the profile's minimum %d: the profile's count is wrong", apdus, p.ReadInfoMinAPDUs)
			}
			if c.image == "sample-v2" {
				// The T=0 card answers 61xx; the transport fetched the rest.
				if b.rec.getRes == 0 {
					t.Fatal("the T=0 card's read used no GET RESPONSE")
				}
				if b.card.Protocol() != pcsc.ProtocolT0 {
					t.Fatalf("protocol %v, want T=0", b.card.Protocol())
				}
			}
			if s := info.String(); strings.Contains(s, img.Holder.SSN) || strings.Contains(s, img.Holder.Name) {
				t.Fatalf("String() shows the holder: %s", s)
			}
		})
	}
}

func TestReadFullInfo(t *testing.T) {
	b := newBed(t, "sample-v2")
	var info *cardapp.BasicInfo
	err := b.op(func(ctx context.Context, app *cardapp.App) error {
		var err error
		info, err = app.ReadFullInfo(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := cardapp.Holder{CardType: "1", InitOrg: "440300000001", Gender: "1", GenderName: "male", Nationality: "05", Birthplace: "440305", BirthDate: "19900101"}
	if info.Holder == nil || *info.Holder != want {
		t.Fatalf("holder %+v", info.Holder)
	}
}

func TestReadBlankCard(t *testing.T) {
	b := newBed(t, "blank-v2")
	info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%X", b.sim.CardID())
	want := fmt.Sprintf("440300|||%s||5353433233444553|2.00|||410100813475|终端设备号|", id)
	if !info.Blank || info.State != cardapp.StateBlank || info.IReadCardBas(terminalNo, deviceNo) != want {
		t.Fatalf("blank: %v\n %s\nwant\n %s", info.Blank, info.IReadCardBas(terminalNo, deviceNo), want)
	}
}

// A card pulled during a read gives a clear error and no partial result,
// at every APDU of the read.
func TestCardPulledDuringRead(t *testing.T) {
	b := newBed(t, "sample-v1")
	p, _ := b.set.Get("ss-v1-3des")
	for k := 1; k < p.ReadInfoMinAPDUs; k++ {
		b.vc.Slot.RemoveAfter(k)
		info, err := cardapp.ReadBasicInfo(context.Background(), b.card, b.set, b.opts)
		if info != nil || !errors.Is(err, pcsc.ErrCardRemoved) {
			t.Fatalf("pulled after %d APDUs: info %v, err %v", k, info, err)
		}
		if !strings.Contains(err.Error(), "card removed") {
			t.Fatalf("unclear error: %v", err)
		}
		b.vc.Slot.Insert()
		b.reconnect()
	}
}

// A card whose ATR matches no profile is identified all the same, by its
// spec version and algorithm (card-reference §9); the old expectation (an
// UnknownCardError for an unmatched ATR) contradicted the evidence.
func TestUnmatchedATRIdentifiedBySpecVersion(t *testing.T) {
	b := newBed(t, "sample-v1")
	// A profile set whose v1 profile carries another ATR.
	sub, err := keysOnlyV2(b.set)
	if err != nil {
		t.Fatal(err)
	}
	var id *cardapp.Identification
	var info *cardapp.BasicInfo
	err = b.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, b.card, sub, b.opts)
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
	if id.Profile != "ss-v1-3des" || id.ATRKnown || id.SpecVersion != "1.00" || id.Algorithm != "3DES" ||
		id.ATR != fmt.Sprintf("%X", b.card.ATR()) || !strings.Contains(id.Reason, "spec version 1.00") || !strings.Contains(id.Reason, "matches no profile") {
		t.Fatalf("identification %+v", id)
	}
	if info.CardNumber != "X00000019" {
		t.Fatalf("read %v", info)
	}
}

func TestVerifyCard(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.Local)
	b := newBed(t, "sample-v2")
	var v *cardapp.Verification
	if err := b.op(func(ctx context.Context, app *cardapp.App) (err error) { v, err = app.VerifyCard(ctx, now); return }); err != nil {
		t.Fatal(err)
	}
	if !v.Genuine || v.Expired || v.ExpiryDate != "20340315" || v.CheckedOn != "20261123" || v.State != cardapp.StateActive {
		t.Fatalf("%+v", v)
	}
	// A host with other keys sees a card it cannot authenticate: not genuine.
	other, err := keys.NewSoftwareKeystore("other issuer", otherKeys()...)
	if err != nil {
		t.Fatal(err)
	}
	b.opts.Keys = other
	err = b.op(func(ctx context.Context, app *cardapp.App) (err error) { _, err = app.VerifyCard(ctx, now); return })
	if !errors.Is(err, cardapp.ErrCardNotGenuine) {
		t.Fatalf("forged: %v", err)
	}

	b1 := newBed(t, "sample-v1")
	if err := b1.op(func(ctx context.Context, app *cardapp.App) (err error) { v, err = app.VerifyCard(ctx, now); return }); err != nil {
		t.Fatal(err)
	}
	if !v.Genuine || !v.Expired || v.State != cardapp.StateExpired {
		t.Fatalf("the 2020 card: %+v", v)
	}
}
