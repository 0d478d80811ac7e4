package issuance_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"ssstation/cardapp"
	"ssstation/cardapp/keys"
	psamhost "ssstation/cardapp/keys/psam"
	profiles "ssstation/firmware-profiles"
	psamsim "ssstation/internal/cardsim/psam"
	"ssstation/internal/cardsim/ssse"
	"ssstation/pcsc"
	"ssstation/pcsc/pcsctest"
	"ssstation/station/issuance"
	"ssstation/station/journal"
	"ssstation/station/secret"
)

// citizenID completes 17 digits with their GB 11643 check digit, so that
// no full ID number is written in this file.
func citizenID(first17 string) string {
	w := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, c := range first17 {
		sum += int(c-'0') * w[i]
	}
	return first17 + string("10X98765432"[sum%11])
}

func requestFor(profile string) *cardapp.PersonalizeRequest {
	switch profile {
	case "ss-v1-3des":
		return &cardapp.PersonalizeRequest{
			Holder: cardapp.HolderData{SSN: citizenID("63010219750614081"), Name: "王小明", Gender: "1", Nationality: "01", Birthplace: "630102", BirthDate: "19750614"},
			Card:   cardapp.CardData{CardType: "1", InitOrg: "630100000001", IssueDate: "20261123", ExpiryDate: "20361123", CardNumber: "Q63010001"}}
	case "ss-v2-3des-t0":
		return &cardapp.PersonalizeRequest{
			Holder: cardapp.HolderData{SSN: citizenID("65010219920315302"), Name: "米日古丽·艾合买提江·阿不都热合曼", Gender: "2", Nationality: "05", Birthplace: "650102", BirthDate: "19920315"},
			Card:   cardapp.CardData{CardType: "1", InitOrg: "650100000001", IssueDate: "20261123", ExpiryDate: "20361123", CardNumber: "W65010002"}}
	}
	return &cardapp.PersonalizeRequest{
		Holder: cardapp.HolderData{SSN: citizenID("32010219880808201"), Name: "周杰", Gender: "1", Nationality: "01", Birthplace: "320102", BirthDate: "19880808"},
		Card:   cardapp.CardData{CardType: "3", InitOrg: "320100000001", IssueDate: "20261123", ExpiryDate: "20361123", CardNumber: "N32010003"}}
}

// lines collects traces, card logs and errors for the leak checks.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string)             { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }
func (l *lines) trace(ev pcsc.TraceEvent) { l.add(ev.String()) }
func (l *lines) logf(f string, a ...any)  { l.add(fmt.Sprintf(f, a...)) }

// station is one test's counter: a card reader with a cardsim card, a
// second reader with the cardsim PSAM holding the issuer keys, and a journal.
type station struct {
	t       *testing.T
	vc      *pcsctest.VirtualCard
	sim     *ssse.Card
	card    *pcsc.Card
	runner  *issuance.Runner
	journal string
	log     *lines
	set     *profiles.Set
	fresh   int // cards swapped in by freshCard
}

func newStation(t *testing.T, image string) *station {
	t.Helper()
	pcsctest.EnsurePCSCD(t)
	set, err := profiles.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	log := &lines{}
	// The PSAM: keys never reach the host.
	pv := pcsctest.StartCard(t, psamsim.Builtin())
	pv.Slot.SetLogf(log.logf)
	_, psamCard := pv.Connect(t, log.trace)
	st := &station{t: t, log: log, set: set}
	st.sim = newSim(t, image, set)
	st.vc = pcsctest.StartCard(t, st.sim)
	st.vc.Slot.SetLogf(log.logf)
	_, st.card = st.vc.Connect(t, log.trace)
	st.journal = filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(st.journal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	key, err := secret.Load(filepath.Dir(st.journal))
	if err != nil {
		t.Fatal(err)
	}
	st.runner = &issuance.Runner{Journal: j, Set: set, Opts: cardapp.Options{Keys: psamhost.New(psamCard)}, Secret: key}
	return st
}

// loadImage is a built-in card image. "delivered-vN" is the card as
// counters receive it (in use, initial PIN: card-reference §9);
// "transport-locked-vN" is the same card transport-locked, for the profile
// option activation.transport_lock (assumption A-ACTIVATION). A ":triesN"
// suffix sets the PIN's tries left, ":pin" a PIN already set by its holder.
func loadImage(t *testing.T, name string) *ssse.Image {
	t.Helper()
	base, opts, _ := strings.Cut(name, ":")
	b, err := ssse.BuiltinJSON(base)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, o := range strings.Split(opts, ",") {
		pin, _ := m["pin"].(map[string]any)
		switch {
		case o == "":
		case o == "pin":
			pin["value"] = "402817"
		case strings.HasPrefix(o, "id"):
			// Another card of the same batch: its own identification code
			// (the last two bytes), so that its journal is its own.
			id := strings.ReplaceAll(m["card_id"].(string), " ", "")
			m["card_id"] = id[:len(id)-4] + fmt.Sprintf("%04s", o[2:])
		case strings.HasPrefix(o, "tries"):
			n, err := strconv.Atoi(strings.TrimPrefix(o, "tries"))
			if err != nil {
				t.Fatal(o)
			}
			pin["tries_left"] = n
		default:
			t.Fatalf("image option %q", o)
		}
	}
	b, _ = json.Marshal(m)
	img, err := ssse.ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newSim(t *testing.T, image string, set *profiles.Set) *ssse.Card {
	t.Helper()
	img := loadImage(t, image)
	sim, err := ssse.New(img, set)
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

func (st *station) reconnect() {
	st.t.Helper()
	if err := st.vc.WaitPresence(true, 10e9); err != nil {
		st.t.Fatal(err)
	}
	_, st.card = st.vc.Connect(st.t, st.log.trace)
}

func (st *station) personalize(opID string, req *cardapp.PersonalizeRequest, lock bool) (*cardapp.PersonalizeResult, *issuance.Outcome, error) {
	var res *cardapp.PersonalizeResult
	var out *issuance.Outcome
	err := st.card.Transaction(context.Background(), func(ctx context.Context) error {
		var err error
		res, out, err = st.runner.Personalize(ctx, st.card, st.card.Reader(), opID, req, lock)
		return err
	})
	if err != nil {
		st.log.add(err.Error())
	}
	return res, out, err
}

// readFull reads the card back through the station's own read path.
func (st *station) readFull() *cardapp.BasicInfo {
	st.t.Helper()
	var info *cardapp.BasicInfo
	err := st.card.Transaction(context.Background(), func(ctx context.Context) error {
		app, err := cardapp.Identify(ctx, st.card, st.set, st.runner.Opts)
		if err != nil {
			return err
		}
		info, err = app.ReadFullInfo(ctx)
		return err
	})
	if err != nil {
		st.t.Fatal(err)
	}
	return info
}

func (st *station) checkHolds(req *cardapp.PersonalizeRequest) {
	st.t.Helper()
	info := st.readFull()
	h, c := req.Holder, req.Card
	got := []string{info.SSN, info.Name, info.Holder.Gender, info.Holder.Nationality, info.Holder.Birthplace, info.Holder.BirthDate,
		info.Holder.CardType, info.Holder.InitOrg, info.IssueDate, info.ExpiryDate, info.CardNumber}
	want := []string{h.SSN, h.Name, h.Gender, h.Nationality, h.Birthplace, h.BirthDate, c.CardType, c.InitOrg, c.IssueDate, c.ExpiryDate, c.CardNumber}
	for i := range got {
		if got[i] != want[i] {
			st.t.Fatalf("field %d reads %q, want %q", i, cardapp.MaskedSSN(got[i]), cardapp.MaskedSSN(want[i]))
		}
	}
}

// A blank card of each profile is personalized, read back equal and
// locked, and then refuses a second personalization.
func TestPersonalizeAndLockEachProfile(t *testing.T) {
	for _, c := range []struct{ image, profile string }{{"blank-v1", "ss-v1-3des"}, {"blank-v2", "ss-v2-3des-t0"}, {"blank-v3", "ss-v3-sm4"}} {
		t.Run(c.image, func(t *testing.T) {
			st := newStation(t, c.image)
			req := requestFor(c.profile)
			res, out, err := st.personalize("", req, true)
			if err != nil {
				t.Fatalf("personalize: %v", err)
			}
			if out.Status != journal.StatusDone || !res.Locked || res.Verified != res.Written || res.Written == 0 {
				t.Fatalf("result %+v outcome %+v", res, out)
			}
			if st.sim.State() != ssse.StateFinalized {
				t.Fatalf("card state %s, want finalized", st.sim.State())
			}
			st.checkHolds(req)

			other := requestFor(c.profile)
			other.Card.CardNumber = "Z99999999"
			_, out2, err := st.personalize("", other, false)
			if !errors.Is(err, cardapp.ErrAlreadyFinalized) || out2.Status != journal.StatusFailed {
				t.Fatalf("second personalization: %v %+v", err, out2)
			}
			st.checkHolds(req) // nothing changed
			st.leakCheck(req)
		})
	}
}

func (st *station) activate(opID, pin string) (*cardapp.ActivateResult, *issuance.Outcome, error) {
	var res *cardapp.ActivateResult
	var out *issuance.Outcome
	err := st.card.Transaction(context.Background(), func(ctx context.Context) error {
		var err error
		res, out, err = st.runner.Activate(ctx, st.card, st.card.Reader(), opID, pin, pin)
		return err
	})
	if err != nil {
		st.log.add(err.Error())
	}
	return res, out, err
}

const holderPIN = "582064"

// A card is blocked, and then answers as locked.
func TestBlockThenLocked(t *testing.T) {
	st := newStation(t, "sample-v2")
	var out *issuance.Outcome
	err := st.card.Transaction(context.Background(), func(ctx context.Context) (err error) {
		out, err = st.runner.Block(ctx, st.card, st.card.Reader(), "", cardapp.BlockPermanent)
		return
	})
	if err != nil || out.Status != journal.StatusDone {
		t.Fatalf("block: %v %+v", err, out)
	}
	err = st.card.Transaction(context.Background(), func(ctx context.Context) error {
		_, err := cardapp.ReadBasicInfo(ctx, st.card, st.set, st.runner.Opts)
		return err
	})
	if !errors.Is(err, cardapp.ErrApplicationLocked) {
		t.Fatalf("after the block: %v", err)
	}
}

// Invalid holder data is rejected before any APDU is sent.
func TestInvalidHolderDataRejectedBeforeAnyAPDU(t *testing.T) {
	st := newStation(t, "blank-v1")
	bad := func(f func(r *cardapp.PersonalizeRequest)) *cardapp.PersonalizeRequest {
		r := requestFor("ss-v1-3des")
		f(r)
		return r
	}
	cases := map[string]*cardapp.PersonalizeRequest{
		"bad check digit": bad(func(r *cardapp.PersonalizeRequest) {
			r.Holder.SSN = r.Holder.SSN[:17] + string("0123456789"[(int(r.Holder.SSN[17]-'0')+1)%10])
		}),
		"name GBK cannot say": bad(func(r *cardapp.PersonalizeRequest) { r.Holder.Name = "王🙂" }),
		"field too long":      bad(func(r *cardapp.PersonalizeRequest) { r.Card.CardNumber = "Q630100011234" }),
		"name too long for a 1.0 card": bad(func(r *cardapp.PersonalizeRequest) {
			r.Holder.Name = "阿卜杜热合曼·买买提艾力·吐尔逊托合提"
		}),
		"not a date": bad(func(r *cardapp.PersonalizeRequest) { r.Card.ExpiryDate = "20360231" }),
	}
	for name, req := range cases {
		before := st.sim.APDUCount()
		_, _, err := st.personalize("", req, false)
		var ve *cardapp.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: %v", name, err)
		}
		if n := st.sim.APDUCount() - before; n != 0 {
			t.Fatalf("%s: %d APDUs sent before the data was refused", name, n)
		}
		if strings.Contains(err.Error(), req.Holder.SSN) || strings.Contains(err.Error(), req.Holder.Name) {
			t.Fatalf("%s: the error quotes the data: %v", name, err)
		}
	}
	if st.sim.State() != ssse.StateBlank {
		t.Fatalf("state %s", st.sim.State())
	}
}

// A different card inserted after a pull is refused for the resumed job,
// and nothing is written to it.
func TestDifferentCardRefusedOnResume(t *testing.T) {
	st := newStation(t, "blank-v2")
	req := requestFor("ss-v2-3des-t0")
	st.vc.Slot.RemoveAfter(14)
	_, out, err := st.personalize("", req, true)
	if !errors.Is(err, issuance.ErrInterrupted) || out.Status != journal.StatusInterrupted {
		t.Fatalf("first attempt: %v %+v", err, out)
	}
	t.Logf("stopped: %s", out.StoppedAt)

	// Another blank card of the same kind goes into the reader.
	imgJSON, _ := ssse.BuiltinJSON("blank-v2")
	var m map[string]any
	json.Unmarshal(imgJSON, &m)
	m["card_id"] = "440300D15600000599AA99AA99AA99AA"
	b, _ := json.Marshal(m)
	img, err := ssse.ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssse.New(img, st.set)
	if err != nil {
		t.Fatal(err)
	}
	st.vc.Slot.Remove()
	st.vc.WaitPresence(false, 10e9)
	st.vc.Slot.SetCard(other)
	st.vc.Slot.Insert()
	st.reconnect()
	_, _, err = st.personalize(out.OpID, req, true)
	if !errors.Is(err, issuance.ErrOtherCard) {
		t.Fatalf("resume on another card: %v", err)
	}
	if other.State() != ssse.StateBlank {
		t.Fatalf("the other card was written: %s", other.State())
	}
	// The right card comes back and the job completes.
	st.vc.Slot.Remove()
	st.vc.WaitPresence(false, 10e9)
	st.vc.Slot.SetCard(st.sim)
	st.vc.Slot.Insert()
	st.reconnect()
	if _, out, err := st.personalize(out.OpID, req, true); err != nil || !out.Resumed {
		t.Fatalf("resume on the right card: %v %+v", err, out)
	}
	st.checkHolds(req)
}

// leakCheck: no PIN, no key byte, no full ID number in the traces (card
// and PSAM), the cards' logs, the errors, or the journal file.
func (st *station) leakCheck(req *cardapp.PersonalizeRequest, pins ...string) {
	st.t.Helper()
	var secrets []string
	secrets = append(secrets, pins...)
	if req != nil {
		secrets = append(secrets, req.Holder.SSN, strings.ToUpper(hex.EncodeToString([]byte(req.Holder.SSN))))
	}
	for _, e := range keys.TestKeys() {
		secrets = append(secrets, strings.ToUpper(hex.EncodeToString(e.Key)))
	}
	st.log.mu.Lock()
	all := strings.Join(st.log.l, "\n")
	n := len(st.log.l)
	st.log.mu.Unlock()
	packed := strings.ReplaceAll(all, " ", "")
	jb, _ := os.ReadFile(st.journal)
	for _, s := range secrets {
		if strings.Contains(all, s) || strings.Contains(packed, s) || bytes.Contains(jb, []byte(s)) {
			st.t.Fatalf("a secret (%d chars) appears in the traces, logs, errors or journal", len(s))
		}
	}
	if n < 30 {
		st.t.Fatalf("only %d lines captured", n)
	}
}
