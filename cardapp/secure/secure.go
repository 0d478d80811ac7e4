// Package secure holds the byte formats that the host and a card must agree
// on for the SSSE application's protected commands: the MAC input and IV,
// the PIN block, and the internal-authentication data. The station's
// operations (cardapp) and the virtual card (cardsim) both use it.
//
// The public specification is silent on all of these; each is the PBOC
// convention, named as an assumption in the firmware profiles
// (A-MAC-*, A-EXT-AUTH, A-CMD-PIN-RELOAD-BY-KEY, A-CMD-PIN-UNBLOCK) and in
// docs/firmware-profiles.md.
package secure

import (
	"errors"
	"fmt"

	"ssstation/cardapp/keys"
)

// MACSize is the length of a command MAC.
const MACSize = 4

// IV is the MAC's initial vector: the card's 8-byte challenge followed by
// zeros up to the cipher's block size (PBOC convention).
func IV(alg keys.Algorithm, challenge []byte) ([]byte, error) {
	if len(challenge) != 8 {
		return nil, fmt.Errorf("secure: challenge of %d bytes, want 8", len(challenge))
	}
	iv := make([]byte, alg.BlockSize())
	copy(iv, challenge)
	return iv, nil
}

// MACInput is what a command MAC covers: the header, Lc counting the MAC,
// and the data before the MAC. data is the command's whole data field,
// the MAC (or its placeholder) being its last 4 bytes.
func MACInput(cla, ins, p1, p2 byte, data []byte) ([]byte, error) {
	if len(data) < MACSize || len(data) > 255 {
		return nil, fmt.Errorf("secure: a MACed command needs 4..255 data bytes, got %d", len(data))
	}
	out := []byte{cla, ins, p1, p2, byte(len(data))}
	return append(out, data[:len(data)-MACSize]...), nil
}

// PINBlockSize is the size of the PIN block the reload and unblock commands
// encrypt: two 3DES blocks or one SM4 block.
const PINBlockSize = 16

// PINBlock formats a PIN for encryption: its digit count, the digits in BCD
// padded with F, then FF up to 16 bytes.
func PINBlock(pin string) ([]byte, error) {
	if len(pin) < 1 || len(pin) > 28 {
		return nil, errors.New("secure: PIN length out of range")
	}
	bcd, err := EncodePIN(pin)
	if err != nil {
		return nil, err
	}
	out := make([]byte, PINBlockSize)
	for i := range out {
		out[i] = 0xFF
	}
	out[0] = byte(len(pin))
	copy(out[1:], bcd)
	return out, nil
}

// ParsePINBlock is the card side of PINBlock.
func ParsePINBlock(b []byte) (string, error) {
	if len(b) != PINBlockSize || b[0] == 0 || int(b[0]) > 2*(PINBlockSize-1) {
		return "", errors.New("secure: malformed PIN block")
	}
	n := int(b[0])
	digits := make([]byte, 0, n)
	for i := 0; i < n; i++ {
		v := b[1+i/2]
		if i%2 == 0 {
			v >>= 4
		}
		v &= 0x0F
		if v > 9 {
			return "", errors.New("secure: malformed PIN block")
		}
		digits = append(digits, '0'+v)
	}
	return string(digits), nil
}

// EncodePIN packs decimal digits two to a byte, an odd count padded with F
// (card-reference §3: VERIFY 00 20 00 00 03 12 34 56). It never echoes the PIN
// in an error.
func EncodePIN(pin string) ([]byte, error) {
	if pin == "" {
		return nil, errors.New("secure: empty PIN")
	}
	out := make([]byte, (len(pin)+1)/2)
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if c < '0' || c > '9' {
			return nil, errors.New("secure: a PIN holds digits only")
		}
		if i%2 == 0 {
			out[i/2] = (c - '0') << 4
		} else {
			out[i/2] |= c - '0'
		}
	}
	if len(pin)%2 == 1 {
		out[len(out)-1] |= 0x0F
	}
	return out, nil
}

// InternalAuthData pads the 8 random bytes of INTERNAL AUTHENTICATE with
// zeros to the block size: the card answers with their encryption.
func InternalAuthData(alg keys.Algorithm, data []byte) ([]byte, error) {
	if len(data) != 8 {
		return nil, fmt.Errorf("secure: internal authentication data of %d bytes, want 8", len(data))
	}
	out := make([]byte, alg.BlockSize())
	copy(out, data)
	return out, nil
}
