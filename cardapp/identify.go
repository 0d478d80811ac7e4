package cardapp

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
)

// Identification says how a card's profile was chosen. An ATR is not
// secret (it names the chip, not the holder), so all of it may be shown.
type Identification struct {
	Profile     string `json:"profile"`
	SpecVersion string `json:"spec_version"` // EF05 tag 03
	Algorithm   string `json:"algorithm"`    // from 9F0C, "3DES" when absent
	// AlgorithmFromCard: the SELECT answer carried 9F0C; false means the
	// absent flag was read as 3DES (card-reference §2).
	AlgorithmFromCard bool   `json:"algorithm_from_card"`
	ATR               string `json:"atr"`
	// ATRKnown: a pattern of the chosen profile matches the ATR. An unknown
	// ATR is normal (no public list of SSSE ATRs exists, card-reference §9).
	ATRKnown bool   `json:"atr_known"`
	Reason   string `json:"reason"`
}

// Identify finds the card's profile the way public readers do
// (card-reference §9): SELECT SSSE straight away, read the spec version
// (EF05 tag 03), take the algorithm from 9F0C in the SELECT answer (absent
// means 3DES, card-reference §2), and choose the profile of that spec
// version and algorithm. The ATR decides nothing by itself: a profile's ATR
// patterns are overrides that pick it first among profiles of the same
// spec version and algorithm, and lend it its selection coding for the
// probe (3F00 first, for a card OS that needs it).
//
// The returned App has the application selected and the spec version read,
// so a read that follows repeats neither.
func Identify(ctx context.Context, s Session, set *profiles.Set, opts Options) (*App, error) {
	const op = "identify card"
	cardATR := s.ATR()
	overrides := set.MatchATR(cardATR)
	probe := probeProfile(set, overrides)
	if probe == nil {
		return nil, opError(op, &UnknownCardError{ATR: cardATR, Reason: "no firmware profile is loaded"})
	}
	app, err := NewApp(s, probe, opts)
	if err != nil {
		return nil, opError(op, err)
	}
	if err := app.selectApp(ctx); err != nil {
		mf := mfFirstProfile(set, probe)
		if !errors.Is(err, apdu.SWFileNotFound) || mf == nil {
			return nil, opError(op, notSSSE(cardATR, err))
		}
		// Not found straight away: one vendor's cards need 3F00 first
		// (card-reference §9). Try once more the way a profile says.
		if app, err = NewApp(s, mf, opts); err != nil {
			return nil, opError(op, err)
		}
		if err := app.selectApp(ctx); err != nil {
			return nil, opError(op, notSSSE(cardATR, err))
		}
	}
	raw, err := app.readRecord(ctx, profiles.ItemSpecVersion)
	if err != nil {
		return nil, opError(op, notSSSE(cardATR, err))
	}
	version, err := records.Decode(records.TypeText, raw)
	if err != nil {
		return nil, opError(op, &UnknownCardError{ATR: cardATR, Reason: "its spec version is not text: " + err.Error()})
	}
	alg := AlgorithmName(app.algEnv)
	cands := candidates(set, version, alg, cardATR, app.p)
	if len(cands) == 0 {
		return nil, opError(op, &UnknownCardError{ATR: cardATR,
			Reason: fmt.Sprintf("no firmware profile for spec version %q with algorithm %s", version, alg)})
	}
	chosen := cands[0]
	id := &Identification{
		Profile: chosen.Name, SpecVersion: version, Algorithm: alg, AlgorithmFromCard: app.algEnv != 0,
		ATR: fmt.Sprintf("%X", cardATR), ATRKnown: chosen.MatchATR(cardATR) >= 0,
	}
	from := "algorithm " + alg
	if !id.AlgorithmFromCard {
		from = "algorithm 3DES (no 9F0C in the SELECT answer)"
	}
	switch {
	case id.ATRKnown:
		id.Reason = fmt.Sprintf("chosen by spec version %s and %s; its ATR matches the profile's pattern", version, from)
	case len(overrides) > 0:
		id.Reason = fmt.Sprintf("chosen by spec version %s and %s; its ATR matches profile %s, which is for spec version %s", version, from, overrides[0].Name, overrides[0].SpecVersion)
	default:
		id.Reason = fmt.Sprintf("chosen by spec version %s and %s; its ATR matches no profile", version, from)
	}
	next := app
	if chosen != app.p {
		if next, err = NewApp(s, chosen, opts); err != nil {
			return nil, opError(op, err)
		}
		if sameSelection(app.p, chosen) {
			// Same application and EF05 coding: keep what the probe did.
			next.inApp, next.blocked, next.algEnv = app.inApp, app.blocked, app.algEnv
			next.current = app.current
			next.values[profiles.ItemSpecVersion] = raw
		}
	}
	next.ident = id
	return next, nil
}

// Identification is how the card's profile was chosen (nil for an App
// made with NewApp).
func (a *App) Identification() *Identification { return a.ident }

// notSSSE turns "file not found" while looking for the application or its
// spec version into an unknown card; other failures stay as they are.
func notSSSE(atr []byte, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, apdu.SWFileNotFound) || errors.Is(err, apdu.SWRecordNotFound) {
		return &UnknownCardError{ATR: atr, Reason: "it has no social security application: " + err.Error()}
	}
	return err
}

// probeProfile is the profile whose selection coding finds the application
// and the spec version: the best ATR override, else the first profile by
// name that selects SSSE straight away (every public reader does,
// card-reference §9), else the first by name.
func probeProfile(set *profiles.Set, overrides []*profiles.Profile) *profiles.Profile {
	if len(overrides) > 0 {
		return overrides[0]
	}
	all := set.List()
	for _, p := range all {
		if !p.Select.MFFirst {
			return p
		}
	}
	if len(all) > 0 {
		return all[0]
	}
	return nil
}

// mfFirstProfile is a profile that selects 3F00 first, to retry with when
// the probe found no application; nil when the probe did so already.
func mfFirstProfile(set *profiles.Set, probe *profiles.Profile) *profiles.Profile {
	if probe.Select.MFFirst {
		return nil
	}
	for _, p := range set.List() {
		if p.Select.MFFirst {
			return p
		}
	}
	return nil
}

// candidates are the profiles of spec version and algorithm, best first:
// those whose ATR patterns match (by priority); then those that select the
// way the card was found (a card that needed 3F00 first keeps a profile
// that does it); then by name.
func candidates(set *profiles.Set, version, alg string, atr []byte, found *profiles.Profile) []*profiles.Profile {
	var out []*profiles.Profile
	for _, p := range set.List() {
		if p.SpecVersion == version && p.Crypto.Algorithm == alg {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ai, aj := out[i].MatchATR(atr), out[j].MatchATR(atr); ai != aj {
			return ai > aj
		}
		return out[i].Select.MFFirst == found.Select.MFFirst && out[j].Select.MFFirst != found.Select.MFFirst
	})
	return out
}

// sameSelection: two profiles select the application and read EF05 the
// same way, so what one selected and read holds for the other.
func sameSelection(a, b *profiles.Profile) bool {
	fa, fb := a.Files["EF05"], b.Files["EF05"]
	if fa == nil || fb == nil {
		return false
	}
	_, ra, _ := a.Record(profiles.ItemSpecVersion)
	_, rb, _ := b.Record(profiles.ItemSpecVersion)
	p1a, p2a := fa.ReadCommand(ra)
	p1b, p2b := fb.ReadCommand(rb)
	return a.Select.MFFirst == b.Select.MFFirst && string(a.Select.SSSEAID) == string(b.Select.SSSEAID) &&
		a.Select.EFP1 == b.Select.EFP1 && a.Select.EFP2 == b.Select.EFP2 && fa.FID == fb.FID &&
		p1a == p1b && p2a == p2b && ra.Type == rb.Type
}
