package cardapp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/pcsc/apdu"
	"ssstation/pcsc/atr"
)

// BasicInfo is what iReadCardBas returns, decoded. Dates are YYYYMMDD.
type BasicInfo struct {
	Profile       string `json:"profile"`
	SpecVersion   string `json:"spec_version"`
	Algorithm     string `json:"algorithm"`
	CardID        string `json:"card_id"`
	RegionCode    string `json:"region_code"`
	IssueDate     string `json:"issue_date"`
	ExpiryDate    string `json:"expiry_date"`
	CardNumber    string `json:"card_number"`
	SSN           string `json:"ssn"`
	Name          string `json:"name"`
	ATRHistorical string `json:"atr_historical"`
	// Blank is a card not yet personalized: no holder on it.
	Blank bool `json:"blank"`
	// State is the card's state as read: StateActive, StateBlank,
	// StateExpired or StateBlockedTemp.
	State string `json:"state"`
	// GenuineChecked: the standard procedure's INTERNAL AUTHENTICATE ran
	// and passed. False when no key provider is configured: the data was
	// read, but nothing proved the card genuine.
	GenuineChecked bool `json:"genuine_checked"`

	// Filled by ReadFullInfo only.
	Holder *Holder `json:"holder,omitempty"`
}

// Holder is the rest of EF05/EF06, read by ReadFullInfo.
type Holder struct {
	CardType    string `json:"card_type"`
	InitOrg     string `json:"init_org"`
	Gender      string `json:"gender"` // "1" male, "2" female
	GenderName  string `json:"gender_name"`
	Nationality string `json:"nationality"`
	Birthplace  string `json:"birthplace"`
	BirthDate   string `json:"birth_date"`
}

// MaskedSSN shows an ID number as logs and errors may: first 4 and last
// 2 characters.
func MaskedSSN(ssn string) string {
	if len(ssn) <= 6 {
		return strings.Repeat("*", len(ssn))
	}
	return ssn[:4] + strings.Repeat("*", len(ssn)-6) + ssn[len(ssn)-2:]
}

// String is safe for logs: no full ID number, no name.
func (b *BasicInfo) String() string {
	if b.Blank {
		return fmt.Sprintf("blank card %s (%s, %s)", b.CardID, b.Profile, b.SpecVersion)
	}
	return fmt.Sprintf("card %s (%s, %s) holder %s", b.CardID, b.Profile, b.SpecVersion, MaskedSSN(b.SSN))
}

// Format makes every fmt verb print String: %v, %+v, %#v, %s and %q of a
// BasicInfo (value or pointer) never show the full ID number or the name,
// however a log line or an error wraps it. The fields themselves are for
// the screen and the iReadCardBas string.
func (b BasicInfo) Format(f fmt.State, verb rune) {
	s := b.String()
	if verb == 'q' {
		s = fmt.Sprintf("%q", s)
	}
	fmt.Fprint(f, s)
}

// GoString is the %#v form: the same safe text.
func (b BasicInfo) GoString() string { return b.String() }

// Err is the refusal the standard interface reports for a card read in a
// state it does not serve: a temporarily blocked application answered
// SELECT with 6283 (LegacyCode gives −25219). Nil for any other state.
func (b *BasicInfo) Err() error {
	if b.State == StateBlockedTemp {
		return refused(ErrApplicationBlocked, apdu.SWWarningFileInvalidated)
	}
	return nil
}

// IReadCardBas is the standard reader interface's string (card-reference §7):
// region | SSN | card number | card id | name | ATR historical bytes |
// spec version | issue date | expiry date | terminal no | device no |
// A blank card has its personal fields empty.
func (b *BasicInfo) IReadCardBas(terminalNo, deviceNo string) string {
	f := []string{b.RegionCode, b.SSN, b.CardNumber, b.CardID, b.Name, b.ATRHistorical, b.SpecVersion, b.IssueDate, b.ExpiryDate, terminalNo, deviceNo}
	return strings.Join(f, "|") + "|"
}

// ReadBasicInfo is the standard's iReadCardBas procedure (card-reference
// §9): read EF05, then EF06 (after RKSSSE where the profile guards it), then
// prove the card genuine with INTERNAL AUTHENTICATE when a key provider is
// configured (a forged card gives ErrCardNotGenuine, code −21). With no key
// provider the step is skipped and GenuineChecked stays false. It sends the
// profile's read_info_min_apdus APDUs, counting Identify's (two fewer
// without a key provider).
func (a *App) ReadBasicInfo(ctx context.Context) (*BasicInfo, error) {
	info, err := a.readInfo(ctx, false)
	return info, opError("read card", err)
}

// ReadFullInfo reads every EF05/EF06 item.
func (a *App) ReadFullInfo(ctx context.Context) (*BasicInfo, error) {
	info, err := a.readInfo(ctx, true)
	return info, opError("read card", err)
}

func (a *App) readInfo(ctx context.Context, full bool) (*BasicInfo, error) {
	// EF05 first, then EF06; within a file the profile's item order. A card
	// pulled half-way gives an error and no partial result.
	items := append([]string(nil), profiles.BasicInfoItems...)
	if full {
		items = nil
		for _, f := range []string{"EF05", "EF06"} {
			for _, r := range a.p.Files[f].Records {
				items = append(items, r.Item)
			}
		}
	}
	vals := map[string]string{}
	for _, item := range orderByFile(a.p, items) {
		_, rec, ok := a.p.Record(item)
		if !ok {
			continue // e.g. name_ext on a 1.0 card
		}
		v, err := a.readRecord(ctx, item)
		if err != nil {
			if rec.Optional && errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		if item == profiles.ItemCardID && a.cardID == nil {
			a.cardID = append([]byte(nil), v...)
		}
		s, err := records.Decode(rec.Type, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", item, err)
		}
		vals[item] = s
	}
	info := &BasicInfo{
		Profile:     a.p.Name,
		SpecVersion: vals[profiles.ItemSpecVersion],
		Algorithm:   AlgorithmName(a.algEnv),
		CardID:      vals[profiles.ItemCardID],
		IssueDate:   vals[profiles.ItemIssueDate],
		ExpiryDate:  vals[profiles.ItemExpiryDate],
		CardNumber:  firstN(vals[profiles.ItemCardNumber], 9), // only the first 9 characters are the number
		SSN:         vals[profiles.ItemSSN],
		Name:        vals[profiles.ItemName] + vals[profiles.ItemNameExt],
	}
	if len(info.CardID) >= 6 {
		info.RegionCode = info.CardID[:6]
	}
	if parsed, err := atr.Parse(a.s.ATR()); parsed != nil && (err == nil || len(parsed.Historical) > 0) {
		info.ATRHistorical = fmt.Sprintf("%X", []byte(parsed.Historical))
	}
	// A blank card keeps what it holds: its identification code, spec
	// version and, where initialization wrote them, its dates (the
	// standard's example `411600||||…|3.00|20211203|20311202|`).
	info.Blank = info.SSN == "" && info.Name == ""
	info.State = a.state(info)
	if a.hasKeys() {
		if err := a.internalAuth(ctx); err != nil {
			return nil, err
		}
		info.GenuineChecked = true
	}
	if full {
		info.Holder = &Holder{
			CardType:    vals[profiles.ItemCardType],
			InitOrg:     vals[profiles.ItemInitOrg],
			Gender:      vals[profiles.ItemGender],
			GenderName:  genderName(vals[profiles.ItemGender]),
			Nationality: vals[profiles.ItemNationality],
			Birthplace:  vals[profiles.ItemBirthplace],
			BirthDate:   vals[profiles.ItemBirthDate],
		}
	}
	return info, nil
}

// state names the card's state from the SELECT answer and the data read.
func (a *App) state(info *BasicInfo) string {
	switch {
	case a.blocked:
		return StateBlockedTemp
	case info.Blank:
		return StateBlank
	case info.ExpiryDate != "" && info.ExpiryDate < a.now().Format("20060102"):
		return StateExpired
	}
	return StateActive
}

// Blocked reports whether SELECT SSSE answered 6283 (a temporarily blocked
// application, e.g. a loss reported).
func (a *App) Blocked() bool { return a.blocked }

func genderName(code string) string {
	switch code {
	case "1":
		return "male"
	case "2":
		return "female"
	case "":
		return ""
	}
	return "unknown (" + code + ")"
}

func firstN(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// orderByFile keeps the items' order within each file and reads EF05's
// before EF06's, so each file is selected once. Items whose read needs a
// key come after the free ones of their file, so the authentication
// happens once, as late as possible.
func orderByFile(p *profiles.Profile, items []string) []string {
	var out []string
	for _, f := range []string{"EF05", "EF06"} {
		var free, keyed []string
		for _, it := range items {
			file, _, ok := p.Record(it)
			if !ok || file != f {
				continue
			}
			if acc, _ := p.ReadAccess(it); acc.Kind == profiles.AccessKey {
				keyed = append(keyed, it)
			} else {
				free = append(free, it)
			}
		}
		out = append(out, free...)
		out = append(out, keyed...)
	}
	return out
}

// ReadBasicInfo identifies the card and reads it: the one call a counter
// application makes for iReadCardBas.
func ReadBasicInfo(ctx context.Context, s Session, set *profiles.Set, opts Options) (*BasicInfo, error) {
	app, err := Identify(ctx, s, set, opts)
	if err != nil {
		return nil, err
	}
	return app.ReadBasicInfo(ctx)
}
