// Package profiles holds the firmware profiles of social security (SSSE) card
// operating systems: data files that say, per card OS variant, how the card is
// recognised (ATR), selected, read and written, which keys and PIN policy it
// uses, and how the commands whose coding no public source confirms are built.
//
// The project's rule is that a fact no public source confirms is a named
// assumption in a profile, with a `source:` note, never a silent constant in
// code. The schema is described field by field in docs/firmware-profiles.md.
package profiles

import (
	"bytes"
	"fmt"
	"sort"
)

// SchemaV1 is the value of the `schema` field every profile starts with.
const SchemaV1 = "ssstation.firmware-profile/v1"

// Protocol is the transmission protocol of the cards a profile was written
// from (and of the virtual card built from it). It is informative: the
// reader negotiates the protocol from the card's ATR, and a card is never
// refused because it runs another one (real 1.00 cards run T=0,
// card-reference §9).
type Protocol string

// Protocols.
const (
	T0 Protocol = "T0"
	T1 Protocol = "T1"
)

// Record item names (the `item` field of a record). Loading rejects any other.
const (
	ItemCardID      = "card_id"      // EF05 tag 01, card identification code, b 16
	ItemCardType    = "card_type"    // EF05 tag 02, an 1
	ItemSpecVersion = "spec_version" // EF05 tag 03, an 4
	ItemInitOrg     = "init_org"     // EF05 tag 04, cn 12
	ItemIssueDate   = "issue_date"   // EF05 tag 05, cn 4
	ItemExpiryDate  = "expiry_date"  // EF05 tag 06, cn 4
	ItemCardNumber  = "card_number"  // EF05 tag 07, an 9
	ItemSSN         = "ssn"          // EF06 tag 08, an 18
	ItemName        = "name"         // EF06 tag 09, an 30
	ItemNameExt     = "name_ext"     // EF06 tag 4E, an 20 (2.0 and 3.0 only)
	ItemGender      = "gender"       // EF06 tag 0A, an 1
	ItemNationality = "nationality"  // EF06 tag 0B, cn 1
	ItemBirthplace  = "birthplace"   // EF06 tag 0C, cn 3
	ItemBirthDate   = "birth_date"   // EF06 tag 0D, cn 4
)

var knownItems = map[string]bool{
	ItemCardID: true, ItemCardType: true, ItemSpecVersion: true, ItemInitOrg: true,
	ItemIssueDate: true, ItemExpiryDate: true, ItemCardNumber: true, ItemSSN: true,
	ItemName: true, ItemNameExt: true, ItemGender: true, ItemNationality: true,
	ItemBirthplace: true, ItemBirthDate: true,
}

// BasicInfoItems are the record items a ReadBasicInfo (iReadCardBas) reads, in
// reading order. name_ext counts only when the profile declares it. Every item
// but name_ext must be declared by every profile.
var BasicInfoItems = []string{
	ItemCardID, ItemSpecVersion, ItemIssueDate, ItemExpiryDate, ItemCardNumber,
	ItemSSN, ItemName, ItemNameExt,
}

// Command template names (keys of `commands`). Loading rejects any other.
const (
	CmdApplicationBlockTemporary = "application_block_temporary"
	CmdApplicationBlockPermanent = "application_block_permanent"
	CmdApplicationUnblock        = "application_unblock"
	CmdCardBlock                 = "card_block"
	CmdPINReload                 = "pin_reload"
	CmdPINReloadByKey            = "pin_reload_by_key"
	CmdPINUnblock                = "pin_unblock"
	CmdPINChange                 = "pin_change"
	CmdFinalize                  = "finalize"
)

var knownCommands = map[string]bool{
	CmdApplicationBlockTemporary: true, CmdApplicationBlockPermanent: true,
	CmdApplicationUnblock: true, CmdCardBlock: true, CmdPINReload: true,
	CmdPINReloadByKey: true, CmdPINUnblock: true, CmdPINChange: true, CmdFinalize: true,
}

// Activation step names (the `activation.steps` list).
const (
	StepInternalAuthenticate = "internal_authenticate"      // 00 88: prove the card genuine
	StepExternalAuthRead     = "external_authenticate_read" // GET CHALLENGE + 00 82 with keys.read
	StepApplicationUnblock   = "application_unblock"        // commands.application_unblock
	StepPINChangeFromInitial = "pin_change_from_initial"    // commands.pin_change from pin.initial
	StepReadBasicInfo        = "read_basic_info"            // read BasicInfoItems
)

// stepCommand maps the steps that send a profile template to that template.
var stepCommand = map[string]string{
	StepInternalAuthenticate: "",
	StepExternalAuthRead:     "",
	StepApplicationUnblock:   CmdApplicationUnblock,
	StepPINChangeFromInitial: CmdPINChange,
	StepReadBasicInfo:        "",
}

// Quirk names (the `quirks` list). Each is informative: code branches on the
// data fields it names, and loading checks that the two agree.
const (
	QuirkMFSelectFirst = "mf_select_first" // select.mf_first is true
	QuirkEFSelectP102  = "ef_select_p1_02" // select.ef_p1 is 02
	QuirkT0GetResponse = "t0_get_response" // protocol T0; the card answers 61xx
	QuirkT0Resend6Cxx  = "t0_resend_6cxx"  // protocol T0; the card answers 6Cxx
)

var knownQuirks = map[string]bool{
	QuirkMFSelectFirst: true, QuirkEFSelectP102: true, QuirkT0GetResponse: true, QuirkT0Resend6Cxx: true,
}

// Read modes of a record file (files.X.read_by.mode): how READ RECORD
// addresses a record (card-reference §2, §9).
const (
	// ReadByIdentifierSFI reads 00 B2 <tag> <SFI<<3|0> Le: the record whose
	// identifier (its tag) is P1, in the EF the short file identifier
	// names, without a SELECT of the EF. The real 1.00 card answers it
	// (00 B2 01 28 12, 00 B2 08 30 14, card-reference §9).
	ReadByIdentifierSFI = "identifier_sfi"
	// ReadByTag selects the EF, then reads 00 B2 <tag> 00 Le (the current
	// EF, record identifier P1), as other public readers do.
	ReadByTag = "tag"
	// ReadByRecordNumber selects the EF, then reads 00 B2 <number> 04 Le:
	// depends on the record numbers, which no public source confirms
	// for every variant.
	ReadByRecordNumber = "record_number"
)

// Diversification level names: the named inputs of one diversification step.
const (
	// LevelRegion is the 6 region digits of the card identification code (its
	// first 3 bytes, already BCD) left-aligned in 8 bytes, padded with FF.
	LevelRegion = "region"
	// LevelCardIDTail is the last 8 bytes of the 16-byte card identification code.
	LevelCardIDTail = "card_id_tail"
)

var knownLevels = map[string]bool{LevelRegion: true, LevelCardIDTail: true}

// FactorChallenge is the INTERNAL AUTHENTICATE factor taken from GET
// CHALLENGE (a "process factor", card-reference §9) rather than from the
// card's data: the host asks the card for 8 random bytes and sends them as
// the command's first 8 data bytes.
const FactorChallenge = "challenge"

// Algorithms, schemes.
const (
	Alg3DES = "3DES"
	AlgSM4  = "SM4"

	DivSchemePBOCv1       = "pboc-div-v1"
	MACSchemePBOCv1       = "pboc-mac-v1"
	ExtAuthChallengeECB16 = "challenge-ecb-16"
	IVChallenge           = "challenge"
)

// DivInput returns the 8-byte input of one diversification level computed
// from the 16-byte card identification code (EF05 record 1).
func DivInput(level string, cardID []byte) ([]byte, error) {
	if len(cardID) != 16 {
		return nil, fmt.Errorf("profiles: card identification code is %d bytes, want 16", len(cardID))
	}
	switch level {
	case LevelRegion:
		out := bytes.Repeat([]byte{0xFF}, 8)
		copy(out, cardID[:3])
		return out, nil
	case LevelCardIDTail:
		return append([]byte(nil), cardID[8:]...), nil
	}
	return nil, fmt.Errorf("profiles: unknown diversification level %q", level)
}

// Profile is one card OS variant.
type Profile struct {
	Schema      string
	Name        string
	Description string
	SpecVersion string // "1.00", "2.00", "3.00"
	// ATR patterns are optional overrides: a card whose ATR matches one is
	// probed with this profile's selection, and the profile wins over others
	// of the same spec version and algorithm. A card is identified by what
	// it answers (spec version, algorithm), never refused for its ATR.
	ATR         []ATRPattern
	Protocol    Protocol
	Select      Select
	Files       map[string]*File // by name: "EF05", "EF06"
	PIN         PINPolicy
	Crypto      Crypto
	Commands    map[string]Template
	Activation  Activation
	Lifecycle   []LifecycleState
	Quirks      []string
	Assumptions []Assumption
	// ReadInfoMinAPDUs is the least number of APDUs a ReadBasicInfo sends on
	// this profile, the transport's own GET RESPONSEs not counted. Loading
	// checks it against ComputeReadInfoAPDUs.
	ReadInfoMinAPDUs int

	// SourceFile is the file name the profile was loaded from.
	SourceFile string
}

// ATRPattern recognises a card by its ATR: atr&Mask == Pattern.
type ATRPattern struct {
	Pattern  []byte
	Mask     []byte
	Priority int
	Note     string
}

// Match reports whether atr matches the pattern (same length, masked bytes equal).
func (a ATRPattern) Match(atr []byte) bool {
	if len(atr) != len(a.Pattern) {
		return false
	}
	for i := range atr {
		if atr[i]&a.Mask[i] != a.Pattern[i] {
			return false
		}
	}
	return true
}

// Select says how the SSSE application and its files are selected.
type Select struct {
	MFFirst bool   // SELECT 3F00 before the SSSE application
	SSSEAID []byte // 7378312E73682EC9E7BBE1B1A3D5CF
	EFP1    byte   // P1 of SELECT by file id (00, or 02 on some cards)
	EFP2    byte
	Source  string
}

// File is an elementary file of the SSSE application.
type File struct {
	Name    string
	FID     [2]byte
	Kind    string // "record" or "transparent"
	Read    Access
	Write   Access
	Records []Record
	// ReadBy is how READ RECORD addresses this record file's records.
	ReadBy ReadBy
	Source string
}

// ReadBy is a record file's reading coding.
type ReadBy struct {
	Mode   string // ReadByIdentifierSFI, ReadByTag or ReadByRecordNumber
	SFI    byte   // short file identifier 1..30, for ReadByIdentifierSFI
	Source string
}

// SelectsEF reports whether reading this file needs a SELECT of it first.
func (f *File) SelectsEF() bool { return f.ReadBy.Mode != ReadByIdentifierSFI }

// ReadCommand is the P1 P2 of a READ RECORD of rec in this file.
func (f *File) ReadCommand(rec Record) (p1, p2 byte) {
	switch f.ReadBy.Mode {
	case ReadByIdentifierSFI:
		return rec.Tag, f.ReadBy.SFI << 3
	case ReadByTag:
		return rec.Tag, 0x00
	}
	return byte(rec.Number), 0x04
}

// AccessKind is how a file or record may be read or written.
type AccessKind string

// Access kinds.
const (
	AccessFree  AccessKind = "free"
	AccessKey   AccessKind = "key"   // EXTERNAL AUTHENTICATE with Access.Key first
	AccessPIN   AccessKind = "pin"   // VERIFY first
	AccessNever AccessKind = "never" // refused
)

// Access is an access condition.
type Access struct {
	Kind AccessKind
	Key  byte // key index, when Kind is AccessKey
}

func (a Access) String() string {
	if a.Kind == AccessKey {
		return fmt.Sprintf("key 0x%02X", a.Key)
	}
	return string(a.Kind)
}

// Record is one record of a record file: a simple TLV tag/length/value.
type Record struct {
	Number int
	Tag    byte
	Item   string
	Type   string // "b", "an", "cn"
	Length int    // 1..255
	// Read overrides the file's read access for this record, when not nil.
	Read *Access
	// Optional records may be missing on a card (6A83): readers carry on.
	Optional bool
	Source   string
	Note     string
}

// PINPolicy is the PIN as personalized.
type PINPolicy struct {
	Initial   string
	MinLength int
	MaxLength int
	Tries     int
	// RetriesByEmptyVerify: a VERIFY without data answers 63Cx with the tries left.
	RetriesByEmptyVerify bool
	Pad                  byte // the nibble that pads an odd-length PIN, 0x0F for "F"
	Source               string
}

// Crypto is the profile's key and algorithm environment.
type Crypto struct {
	Algorithm string         // "3DES" or "SM4"
	Keys      map[string]int // card key indexes (P2 of the AUTHENTICATE commands) by role: internal_auth, read, write, reload
	// HolderKeys are the logical key names of the key holder (PSAM, HSM or
	// the software keystore: cardapp/keys KeyName) the profile uses.
	HolderKeys      []HolderKey
	Diversification Diversification
	MAC             MACSpec
	ExternalAuth    ExternalAuth
	InternalAuth    InternalAuth
}

// HolderKey is a master key of the key holder, by its logical name
// ("rkssse", "app-block", ...), which the holder diversifies per card.
type HolderKey struct {
	Name    string
	CardKey string // the Crypto.Keys role it authenticates, if any ("read" for rkssse)
	Source  string
}

// HolderKeyFor returns the key holder's name for the card key role (a name
// in Crypto.Keys), e.g. "rkssse" for "read".
func (p *Profile) HolderKeyFor(cardKey string) (string, bool) {
	for _, h := range p.Crypto.HolderKeys {
		if h.CardKey == cardKey {
			return h.Name, true
		}
	}
	return "", false
}

// Diversification is how per-card keys derive from issuer keys: one step per level.
type Diversification struct {
	Scheme string
	Levels []string
	Source string
}

// MACSpec is how command MACs are computed.
type MACSpec struct {
	Scheme string
	IV     string
	Source string
}

// ExternalAuth is how the 16 bytes of EXTERNAL AUTHENTICATE are computed.
type ExternalAuth struct {
	Scheme string
	Source string
}

// InternalAuth is how INTERNAL AUTHENTICATE (00 88 00 P2 10 factor data) is sent.
type InternalAuth struct {
	Key string // a name in Crypto.Keys: its index is P2
	// Factor is the 8-byte factor: FactorChallenge (from GET CHALLENGE) or a
	// diversification level name (from the card identification code).
	Factor string
	Source string
}

// Activation is the steps that activate a delivered card.
type Activation struct {
	Steps []string
	// TransportLock: a delivered card comes with its application
	// temporarily blocked and activation releases it (APPLICATION UNBLOCK)
	// before the PIN step. No public card is delivered so (card-reference
	// §9): off in the shipped profiles, assumption A-ACTIVATION.
	TransportLock bool
	Note          string
	Source        string
}

// LifecycleState is an informative note on one life cycle state.
type LifecycleState struct {
	State  string
	Via    string // a command name, "activation", or empty
	Note   string
	Source string
}

// Assumption is one named assumption of a profile.
type Assumption struct {
	ID     string
	Text   string
	Source string
}

// Record finds the record holding item; file is the name of its file.
func (p *Profile) Record(item string) (file string, rec Record, ok bool) {
	for _, name := range p.fileNames() {
		for _, r := range p.Files[name].Records {
			if r.Item == item {
				return name, r, true
			}
		}
	}
	return "", Record{}, false
}

// ReadAccess is the access condition for reading item: the record's own, or its file's.
func (p *Profile) ReadAccess(item string) (Access, bool) {
	file, rec, ok := p.Record(item)
	if !ok {
		return Access{}, false
	}
	if rec.Read != nil {
		return *rec.Read, true
	}
	return p.Files[file].Read, true
}

// HasQuirk reports whether the profile lists quirk q.
func (p *Profile) HasQuirk(q string) bool {
	for _, x := range p.Quirks {
		if x == q {
			return true
		}
	}
	return false
}

// MatchATR returns the best priority of the profile's ATR patterns that match
// atr, or -1 when none does.
func (p *Profile) MatchATR(atr []byte) int {
	best := -1
	for _, a := range p.ATR {
		if a.Priority > best && a.Match(atr) {
			best = a.Priority
		}
	}
	return best
}

// Template returns the command template called name.
func (p *Profile) Template(name string) (Template, bool) {
	t, ok := p.Commands[name]
	return t, ok
}

// InternalAuthAPDUs is what the genuineness check adds to a read: GET
// CHALLENGE (the process factor) and INTERNAL AUTHENTICATE.
const InternalAuthAPDUs = 2

// ComputeReadInfoAPDUs counts the APDUs of a ReadBasicInfo (the standard's
// iReadCardBas procedure, card-reference §9) on this profile: SELECT 3F00
// (if select.mf_first) + SELECT SSSE + per file holding a basic item, one
// SELECT unless the file is read by identifier and SFI + one READ RECORD
// per item + per distinct key guarding a basic item, GET CHALLENGE and
// EXTERNAL AUTHENTICATE + one VERIFY when a PIN guards one + the
// genuineness check (InternalAuthAPDUs), sent when a key provider is
// configured. The transport's GET RESPONSEs and the key holder's (PSAM)
// APDUs are not counted.
func (p *Profile) ComputeReadInfoAPDUs() (int, error) {
	n := 1 + InternalAuthAPDUs // SELECT SSSE, GET CHALLENGE + INTERNAL AUTHENTICATE
	if p.Select.MFFirst {
		n++
	}
	selected := map[string]bool{}
	keys := map[byte]bool{}
	pin := false
	for _, item := range BasicInfoItems {
		file, _, ok := p.Record(item)
		if !ok {
			if item == ItemNameExt {
				continue
			}
			return 0, fmt.Errorf("no record holds %s", item)
		}
		if !selected[file] {
			selected[file] = true
			if p.Files[file].SelectsEF() {
				n++
			}
		}
		n++
		acc, _ := p.ReadAccess(item)
		switch acc.Kind {
		case AccessKey:
			keys[acc.Key] = true
		case AccessPIN:
			pin = true
		case AccessNever:
			return 0, fmt.Errorf("%s can never be read", item)
		}
	}
	n += 2 * len(keys)
	if pin {
		n++
	}
	return n, nil
}

func (p *Profile) fileNames() []string {
	names := make([]string, 0, len(p.Files))
	for n := range p.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
