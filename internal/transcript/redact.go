package transcript

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// Fictional is the fictional person and card a transcript's personal data
// becomes. Every personal value is replaced by a value of the same length
// and type, consistently (the same original always becomes the same
// fiction, wherever it appears), so the transcript still replays and the
// read flow still decodes it:
//
//   - the card identification code (EF05 tag 01, 16 bytes): the region
//     (bytes 1..3) becomes Region, the issuer bytes 4..8 stay, the serial
//     (bytes 9..16) becomes random; every run of 2 or more of its bytes in
//     the ATR's historical bytes (cards repeat the region and serial there)
//     becomes the matching fictional bytes;
//   - the card number (tag 07): digits random, letters kept;
//   - the SSN (tag 08): Region, a random birth date, a sequence number of
//     the same parity (the SSN's gender digit), a valid check digit;
//   - the name (tags 09 and 4E): fictional GBK characters of the same byte
//     length, the card's padding (spaces, zeros) kept;
//   - the birthplace (tag 0C) becomes Region, the birth date (0D) the
//     fictional SSN's;
//   - READ BINARY answers (EF07: fingerprint) become zeros.
type Fictional struct {
	Region string    // 6 digits; default "639900" (no such region)
	Rand   io.Reader // default crypto/rand
}

// The SSSE record tags that hold personal data (card-reference §2).
const (
	tagCardID     = 0x01
	tagCardNumber = 0x07
	tagSSN        = 0x08
	tagName       = 0x09
	tagGender     = 0x0A
	tagBirthplace = 0x0C
	tagBirthDate  = 0x0D
	tagNameExt    = 0x4E
)

// nameChars are the fictional name's characters (the heavenly stems).
var nameChars = []rune("甲乙丙丁戊己庚辛壬癸")

type redactor struct {
	f      Fictional
	swap   map[string][]byte // original value bytes -> fiction
	byTag  map[byte]map[string][]byte
	cardID [2][]byte // original, fiction
	date   []byte    // the fictional birth date, YYYYMMDD digits
}

// Redact replaces the personal data of t in place (see Fictional).
func Redact(t *Transcript, f *Fictional) error {
	r := &redactor{swap: map[string][]byte{}, byTag: map[byte]map[string][]byte{}}
	if f != nil {
		r.f = *f
	}
	if r.f.Region == "" {
		r.f.Region = "639900"
	}
	if len(r.f.Region) != 6 || !digits(r.f.Region) {
		return fmt.Errorf("transcript: fictional region %q: want 6 digits", r.f.Region)
	}
	if r.f.Rand == nil {
		r.f.Rand = rand.Reader
	}
	ex, err := t.Parse()
	if err != nil {
		return err
	}
	// First pass: learn the personal values from the records read.
	for _, e := range ex {
		if e.Masked {
			continue
		}
		for _, rec := range records(e) {
			if err := r.learn(rec[0], rec[2:]); err != nil {
				return err
			}
		}
	}
	// Second pass: replace them everywhere.
	for i, e := range ex {
		if e.Masked {
			continue
		}
		cmd, resp := r.apply(e.Raw), r.apply(e.Response)
		if e.Command.CLA == 0x00 && e.Command.INS == 0xB0 && len(resp) > 2 {
			clear(resp[:len(resp)-2])
		}
		t.Exchanges[i].Command, t.Exchanges[i].Response = Hex(cmd), Hex(resp)
	}
	if atr, err := t.ATRBytes(); err == nil && r.cardID[0] != nil {
		t.ATR = Hex(r.atr(atr))
	}
	return nil
}

// records finds record TLVs in an exchange: a READ RECORD answer, an
// UPDATE RECORD's data.
func records(e Parsed) [][]byte {
	var out [][]byte
	tlv := func(b []byte) {
		if len(b) >= 2 && int(b[1]) == len(b)-2 {
			out = append(out, b)
		}
	}
	if e.Command.CLA == 0x00 && e.Command.INS == 0xDC {
		tlv(e.Command.Data)
	}
	if len(e.Response) > 2 {
		data := e.Response[:len(e.Response)-2]
		// A READ RECORD answer, or a GET RESPONSE that brings one.
		if e.Command.INS == 0xB2 || e.Command.INS == 0xC0 {
			tlv(data)
		}
	}
	return out
}

func blank(v []byte) bool {
	for _, b := range v {
		if b != 0x00 && b != 0xFF && b != 0x20 {
			return false
		}
	}
	return true
}

// learn records the fiction for one record value.
func (r *redactor) learn(tag byte, v []byte) error {
	if blank(v) {
		return nil
	}
	if _, seen := r.swap[string(v)]; seen {
		return nil
	}
	if m := r.byTag[tag]; m != nil {
		if _, seen := m[string(v)]; seen {
			return nil
		}
	}
	var fic []byte
	var err error
	global := true
	switch tag {
	case tagCardID:
		if len(v) != 16 {
			return nil
		}
		fic = append(bcd(r.f.Region)[:3:3], v[3:8]...)
		tail := make([]byte, 8)
		if _, err := io.ReadFull(r.f.Rand, tail); err != nil {
			return err
		}
		fic = append(fic, tail...)
		r.cardID = [2][]byte{append([]byte(nil), v...), fic}
	case tagCardNumber:
		fic = r.scramble(v)
	case tagSSN:
		if fic, err = r.ssn(v); err != nil {
			return err
		}
	case tagName, tagNameExt:
		fic = r.name(v)
	case tagBirthplace:
		fic, global = append(bcd(r.f.Region), bytes.Repeat([]byte{0xFF}, max(0, len(v)-3))...)[:len(v)], false
	case tagBirthDate:
		d := r.date
		if d == nil {
			if d, err = r.randomDate(); err != nil {
				return err
			}
			r.date = d
		}
		fic, global = append(bcd(string(d)), bytes.Repeat([]byte{0xFF}, max(0, len(v)-4))...)[:len(v)], false
	default:
		return nil
	}
	if global && len(v) >= 4 {
		r.swap[string(v)] = fic
		return nil
	}
	if r.byTag[tag] == nil {
		r.byTag[tag] = map[string][]byte{}
	}
	r.byTag[tag][string(v)] = fic
	return nil
}

// apply replaces every learnt value in b (a command or a response).
func (r *redactor) apply(b []byte) []byte {
	out := append([]byte(nil), b...)
	for orig, fic := range r.swap {
		for i := 0; ; {
			j := bytes.Index(out[i:], []byte(orig))
			if j < 0 {
				break
			}
			copy(out[i+j:], fic)
			i += j + len(fic)
		}
	}
	// Short values only inside their own record (a TLV with their tag).
	for i := 0; i+2 <= len(out); i++ {
		m := r.byTag[out[i]]
		n := int(out[i+1])
		if m == nil || i+2+n > len(out) {
			continue
		}
		if fic, ok := m[string(out[i+2:i+2+n])]; ok {
			copy(out[i+2:], fic)
			i += 1 + n
		}
	}
	return out
}

// atr replaces, in the historical bytes, every run of 2 or more bytes of
// the card identification code by the fictional code's bytes at the same
// place, longest runs first.
func (r *redactor) atr(atr []byte) []byte {
	out := append([]byte(nil), atr...)
	orig, fic := r.cardID[0], r.cardID[1]
	done := make([]bool, len(out))
	start := historicalStart(out)
	for n := len(orig); n >= 2; n-- {
		for i := 0; i+n <= len(orig); i++ {
			run := orig[i : i+n]
			if bytes.Count(run, run[:1]) == n { // 00 00, FF FF: no evidence
				continue
			}
			for j := start; j+n <= len(out); j++ {
				if !bytes.Equal(out[j:j+n], run) || anyTrue(done[j:j+n]) {
					continue
				}
				copy(out[j:], fic[i:i+n])
				for k := j; k < j+n; k++ {
					done[k] = true
				}
			}
		}
	}
	return out
}

// historicalStart is the index of the first historical byte (ISO/IEC
// 7816-3: TS, T0, then the interface bytes T0 and each TDi announce).
func historicalStart(atr []byte) int {
	if len(atr) < 2 {
		return len(atr)
	}
	i, y := 2, atr[1]>>4
	for {
		for bit := byte(1); bit <= 4; bit <<= 1 {
			if y&bit != 0 {
				i++
			}
		}
		if y&8 == 0 || i-1 >= len(atr) {
			break
		}
		y = atr[i-1] >> 4
	}
	return min(i, len(atr))
}

func anyTrue(b []bool) bool {
	for _, v := range b {
		if v {
			return true
		}
	}
	return false
}

func (r *redactor) digit() (byte, error) {
	var b [1]byte
	for {
		if _, err := io.ReadFull(r.f.Rand, b[:]); err != nil {
			return 0, err
		}
		if b[0] < 250 {
			return '0' + b[0]%10, nil
		}
	}
}

// scramble keeps letters and replaces every digit by a random one.
func (r *redactor) scramble(v []byte) []byte {
	out := append([]byte(nil), v...)
	for i, c := range out {
		if c >= '0' && c <= '9' {
			if d, err := r.digit(); err == nil {
				out[i] = d
			}
		}
	}
	return out
}

// randomDate is a date from 1950-01-01 to 1999-12-28, YYYYMMDD.
func (r *redactor) randomDate() ([]byte, error) {
	var b [3]byte
	if _, err := io.ReadFull(r.f.Rand, b[:]); err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%04d%02d%02d", 1950+int(b[0])%50, 1+int(b[1])%12, 1+int(b[2])%28), nil
}

// ssn makes a fictional citizen ID number of the same length: Region,
// birth date, sequence of the same parity, check digit (GB 11643).
func (r *redactor) ssn(v []byte) ([]byte, error) {
	text := trimPad(v)
	if len(text) != 18 || !digits(string(text[:17])) {
		return r.scramble(v), nil
	}
	d := r.date
	if d == nil {
		var err error
		if d, err = r.randomDate(); err != nil {
			return nil, err
		}
		r.date = d
	}
	out := append([]byte(r.f.Region), d...)
	for range 2 {
		c, err := r.digit()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	c, err := r.digit()
	if err != nil {
		return nil, err
	}
	if (c-'0')%2 != (text[16]-'0')%2 {
		c = '0' + (c-'0'+1)%10
	}
	out = append(out, c)
	out = append(out, CheckDigit(string(out)))
	return append(out, v[18:]...), nil
}

// CheckDigit is the GB 11643 check character of the first 17 digits.
func CheckDigit(first17 string) byte {
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, w := range weights {
		sum += int(first17[i]-'0') * w
	}
	return "10X98765432"[sum%11]
}

// name makes fictional GBK text of the same byte length, keeping the
// padding after it.
func (r *redactor) name(v []byte) []byte {
	n := len(trimPad(v))
	var text []byte
	for i := 0; len(text)+2 <= n; i++ {
		var b [1]byte
		if _, err := io.ReadFull(r.f.Rand, b[:]); err != nil {
			b[0] = byte(i)
		}
		g, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(string(nameChars[int(b[0])%len(nameChars)])))
		if err != nil {
			break
		}
		text = append(text, g...)
	}
	for len(text) < n {
		text = append(text, 'X')
	}
	return append(text, v[n:]...)
}

// trimPad drops trailing padding bytes (20, 00, FF). Byte by byte: GBK
// text is not UTF-8, so bytes.TrimRight's rune cutset would eat it.
func trimPad(v []byte) []byte {
	n := len(v)
	for n > 0 && (v[n-1] == 0x20 || v[n-1] == 0x00 || v[n-1] == 0xFF) {
		n--
	}
	return v[:n]
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// bcd packs decimal digits two per byte (cn), an odd count padded with F.
func bcd(s string) []byte {
	out := make([]byte, (len(s)+1)/2)
	for i := range out {
		out[i] = 0xFF
	}
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if i%2 == 0 {
			out[i/2] = d<<4 | 0x0F
		} else {
			out[i/2] = out[i/2]&0xF0 | d
		}
	}
	return out
}
