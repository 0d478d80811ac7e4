// Package ssse is the simulator's social security (SSSE) card: the generic
// ISO/IEC 7816-4 engine (internal/cardsim/engine) driven by a firmware profile
// (firmware-profiles) and a card image (blank or personalized), answering
// the SSSE application's commands the way real cards and the public
// readers do (card-reference §9). The formats are shared, never
// re-implemented: records for the record values, cardapp/keys for the
// ciphers and MACs, cardapp/secure for the MAC input and IV, the PIN block
// and the internal authentication data.
//
//	img, _ := ssse.Builtin("sample-v2")
//	card, err := ssse.New(img, nil) // nil: the built-in profiles
//
// What the card does (status words exact; docs/cardsim.md has the table):
//
//   - SELECT 3F00; SELECT the SSSE application by name straight after
//     reset (FCI with the algorithm environment 9F0C 03 86 01 xx, or the
//     image's own FCI); SELECT EF05/EF06/EF07 by FID with P1 00 or 02,
//     answered 90 00 without data. Only a profile with select.mf_first
//     (one vendor's quirk, off in the shipped profiles) needs SELECT 3F00
//     first. Selecting SSSE again keeps the security state; selecting the
//     MF or a reset clears it.
//   - READ RECORD by number (00 B2 nn SFI<<3|04), by identifier with an SFI
//     (00 B2 tt SFI<<3) and by identifier in the current EF (00 B2 tt 00),
//     access per profile; UPDATE RECORD by number while the card is blank
//     or personalized; READ/UPDATE BINARY of EF07.
//   - GET CHALLENGE, EXTERNAL AUTHENTICATE (per-key try counter of 3),
//     INTERNAL AUTHENTICATE (any 8-byte process factor), VERIFY, and the
//     profile's command templates: CHANGE PIN, RELOAD PIN, PIN RELOAD BY
//     KEY, PIN UNBLOCK (resets the try counter only), APPLICATION BLOCK /
//     UNBLOCK, CARD BLOCK, FINALIZE (assumption A-CMD-FINALIZE), recognised
//     by the header bytes of their templates, so an override profile's
//     codings are honoured.
//   - The life cycle (State): a blocked application answers 6283 to its
//     SELECT and 6985 to everything but SELECT, READ RECORD/BINARY, GET
//     CHALLENGE, INTERNAL and EXTERNAL AUTHENTICATE and the maintenance
//     commands (assumption A-BLOCKED-READ); a permanently blocked one
//     9303; a blocked card 6A81.
//
// A T=0 card (a T0 profile, or an image whose own ATR offers T=0 only) is
// wrapped with engine.T0 (61xx, 6Cxx). The image's card section
// (CardQuirks) gives a card what its batch does beyond its profile: its
// ATR, FCI, padding and record numbering. The card is safe for concurrent
// use: the accessors take the engine's lock.
//
// Files: card.go (the card, accessors), build.go (from profile and image),
// dispatch.go (life cycle gate, SELECT), recordcmd.go (READ/UPDATE
// RECORD), auth.go (EXTERNAL/INTERNAL AUTHENTICATE), pincmd.go (VERIFY),
// template.go (the profile's command templates), image.go (images).
package ssse

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/records"
	profiles "ssstation/firmware-profiles"
	"ssstation/internal/cardsim/engine"
	"ssstation/internal/cardsim/vpcd"
)

// ExternalAuthTries is the try counter of each card key for EXTERNAL
// AUTHENTICATE: a wrong cryptogram answers 63Cx, and 6983 once it is 0
// (for good: the counter is non-volatile and nothing resets it).
const ExternalAuthTries = 3

// Card is a live SSSE card. It implements vpcd.Card.
type Card struct {
	prof   *profiles.Profile
	img    *Image
	alg    keys.Algorithm
	cardID []byte
	atr    []byte

	// From the profile, or the image's card section (CardQuirks).
	t0Card     bool                   // T=0 transport
	fci        []byte                 // the answer to SELECT SSSE
	anPad      byte                   // pads an values
	sequential bool                   // records numbered 1..n without gaps
	recNums    map[string]map[int]int // file -> profile record number -> card's

	eng   *engine.Card
	inner *rawCard
	t0    *engine.T0Card
	apdus atomic.Int64

	// Fixed at New.
	cardKeys   map[string][]byte // holder key name -> this card's diversified key
	keyByIndex map[byte]string   // card key index (EXTERNAL AUTHENTICATE P2) -> holder key name
	intAuthP2  byte
	intAuthKey string
	files      map[uint16]*efInfo
	ops        map[[4]byte]*tplOp
	opINS      map[[2]byte]bool // CLA, INS of the templates

	// Guarded by the engine's lock.
	state      State
	pin        string
	tries      int
	keyTries   map[byte]int
	mfSelected bool // SELECT 3F00 since the last reset (select.mf_first)
}

var _ vpcd.Card = (*Card)(nil)

// efInfo links an engine EF to the profile file it implements.
type efInfo struct {
	nums map[int]int // profile record number -> this card's (CardQuirks.RecordNumbers)
	name string
	prof *profiles.File // nil for EF07 when the profile does not declare it
	ef   *engine.EF
}

// number is the record's number on this card.
func (f *efInfo) number(r profiles.Record) int {
	if n, ok := f.nums[r.Number]; ok {
		return n
	}
	return r.Number
}

// tplOp is one command template of the profile, as the card recognises it.
type tplOp struct {
	name   string
	t      profiles.Template
	hdr    [4]byte
	lc     int  // the Lc the template implies, -1 when variable
	hasMAC bool // ends with {mac}
	enc    bool // {cryptogram16} or {enc_pin_block16}: an encrypted PIN block
	sep    []byte
}

// rawCard is the card before any T=0 transport: it counts the APDUs the
// SSSE application itself processes (not the transport's GET RESPONSEs).
type rawCard struct{ c *Card }

func (r *rawCard) ATR() []byte   { return append([]byte(nil), r.c.atr...) }
func (r *rawCard) ATRT0() []byte { return append([]byte(nil), r.c.atr...) }
func (r *rawCard) Reset()        { r.c.eng.Reset() }
func (r *rawCard) Process(raw []byte) []byte {
	r.c.apdus.Add(1)
	return r.c.eng.Process(raw)
}

// New builds a fresh card from an image and a profile set (nil: the
// built-in profiles). Errors name the image field at fault.
func New(img *Image, set *profiles.Set) (*Card, error) {
	if img == nil {
		return nil, errors.New("ssse: no image")
	}
	if err := img.check(); err != nil {
		return nil, err
	}
	if set == nil {
		var err error
		if set, err = profiles.Builtin(); err != nil {
			return nil, fmt.Errorf("ssse: built-in profiles: %w", err)
		}
	}
	prof, ok := set.Get(img.Profile)
	if !ok {
		var names []string
		for _, p := range set.List() {
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("profile: unknown profile %q (have %s)", img.Profile, strings.Join(names, ", "))
	}
	alg, err := keys.ParseAlgorithm(prof.Crypto.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("profile %s: crypto.algorithm: %w", prof.Name, err)
	}
	c := &Card{
		prof:       prof,
		img:        img,
		alg:        alg,
		state:      img.State,
		keyTries:   map[byte]int{},
		cardKeys:   map[string][]byte{},
		keyByIndex: map[byte]string{},
		files:      map[uint16]*efInfo{},
		ops:        map[[4]byte]*tplOp{},
		opINS:      map[[2]byte]bool{},
	}
	if c.cardID, err = records.Encode(records.TypeBinary, 16, img.CardID); err != nil {
		return nil, fmt.Errorf("card_id: want 16 bytes in hex: %w", err)
	}
	if err := c.applyQuirks(); err != nil {
		return nil, err
	}
	recs, err := c.buildRecords()
	if err != nil {
		return nil, err
	}
	if err := c.setPIN(); err != nil {
		return nil, err
	}
	if err := c.setKeys(); err != nil {
		return nil, err
	}
	if err := c.setOps(); err != nil {
		return nil, err
	}
	if err := c.buildEngine(recs); err != nil {
		return nil, err
	}
	c.inner = &rawCard{c}
	if c.t0Card {
		c.t0 = engine.T0(c.inner)
	}
	return c, nil
}

// ATR is the profile's highest-priority ATR (a T=0 one on a T0 profile).
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// Reset is power-up: MF selected, no verified PIN or authenticated key, no
// challenge; the files, the state and the try counters are kept.
func (c *Card) Reset() {
	if c.t0 != nil {
		c.t0.Reset()
		return
	}
	c.inner.Reset()
}

// Process answers one raw command APDU (through the T=0 transport on a T0 profile).
func (c *Card) Process(raw []byte) []byte {
	if c.t0 != nil {
		return c.t0.Process(raw)
	}
	return c.inner.Process(raw)
}

// Profile is the card's firmware profile.
func (c *Card) Profile() *profiles.Profile { return c.prof }

// Image is the image the card was built from.
func (c *Card) Image() *Image { return c.img }

// CardID is the card identification code the card's keys were diversified with.
func (c *Card) CardID() []byte { return append([]byte(nil), c.cardID...) }

// State is the application's life cycle state now.
func (c *Card) State() State {
	var s State
	c.eng.Do(func(*engine.Card) { s = c.state })
	return s
}

// PIN is the current PIN value.
func (c *Card) PIN() string {
	var s string
	c.eng.Do(func(*engine.Card) { s = c.pin })
	return s
}

// Tries is the PIN's try counter (0: blocked).
func (c *Card) Tries() int {
	var n int
	c.eng.Do(func(*engine.Card) { n = c.tries })
	return n
}

// KeyTries is the EXTERNAL AUTHENTICATE try counter of card key index k,
// -1 for an unknown index.
func (c *Card) KeyTries(k byte) int {
	n := -1
	c.eng.Do(func(*engine.Card) {
		if v, ok := c.keyTries[k]; ok {
			n = v
		}
	})
	return n
}

// Record returns a copy of record n (the whole TLV) of file ("EF05",
// "EF06"), nil when there is none.
func (c *Card) Record(file string, n int) []byte {
	var out []byte
	c.eng.Do(func(*engine.Card) {
		for _, info := range c.files {
			if info.name == file {
				if r, ok := info.ef.Record(n); ok && r != nil {
					out = append([]byte(nil), r...)
				}
			}
		}
	})
	return out
}

// APDUCount is the number of APDUs the application processed, the T=0
// transport's GET RESPONSEs and 6Cxx resends not counted.
func (c *Card) APDUCount() int { return int(c.apdus.Load()) }

func sortedFileNames(p *profiles.Profile) []string {
	return sortedKeys(p.Files)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
