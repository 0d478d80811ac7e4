package keys

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/emmansun/gmsm/cbcmac"
	"github.com/emmansun/gmsm/padding"
	"github.com/emmansun/gmsm/sm4"
)

// Algorithm names a card block cipher.
type Algorithm string

const (
	// TDES is two-key triple DES (K1, K2, K1), 16-byte keys, 8-byte blocks.
	TDES Algorithm = "3DES"
	// SM4 is GB/T 32907-2016 SM4, 16-byte keys, 16-byte blocks.
	SM4 Algorithm = "SM4"
)

// KeySize is the length of every key this package handles: a 2-key 3DES key
// (K1 || K2) or an SM4 key.
const KeySize = 16

// FactorSize is the length of one diversification factor.
const FactorSize = 8

// MACSize is the length of the PBOC-style MAC returned by [ComputeMAC] and
// [Provider.MAC].
const MACSize = 4

// Errors returned by the pure functions. They are wrapped with context (never
// with key bytes); test with errors.Is.
var (
	ErrUnknownAlgorithm = errors.New("keys: unknown algorithm")
	ErrKeyLength        = errors.New("keys: bad key length")
	ErrDataLength       = errors.New("keys: data is not a non-empty whole number of blocks")
	ErrIVLength         = errors.New("keys: IV longer than the block size")
	ErrFactorLength     = errors.New("keys: diversification factor is not 8 bytes")
	ErrMACLength        = errors.New("keys: bad MAC length")
)

// BlockSize returns the cipher block size in bytes: 8 for 3DES, 16 for SM4,
// 0 for an unknown algorithm.
func (a Algorithm) BlockSize() int {
	switch a {
	case TDES:
		return 8
	case SM4:
		return 16
	}
	return 0
}

// Valid reports whether a is one of the supported algorithms.
func (a Algorithm) Valid() bool { return a.BlockSize() != 0 }

// ParseAlgorithm accepts "3DES", "TDES", "DES3", "TDEA" (for [TDES]) and "SM4",
// case-insensitively.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "3DES", "TDES", "DES3", "TDEA":
		return TDES, nil
	case "SM4":
		return SM4, nil
	}
	return "", fmt.Errorf("%w %q (want 3DES or SM4)", ErrUnknownAlgorithm, s)
}

func checkAlg(alg Algorithm) error {
	if !alg.Valid() {
		return fmt.Errorf("%w %q", ErrUnknownAlgorithm, string(alg))
	}
	return nil
}

func checkKey(alg Algorithm, key []byte) error {
	if err := checkAlg(alg); err != nil {
		return err
	}
	if len(key) != KeySize {
		return fmt.Errorf("%w: %s key is %d bytes, want %d", ErrKeyLength, alg, len(key), KeySize)
	}
	return nil
}

// newBlock returns the block cipher for alg under key (already checked).
func newBlock(alg Algorithm, key []byte) (cipher.Block, error) {
	if err := checkKey(alg, key); err != nil {
		return nil, err
	}
	switch alg {
	case TDES:
		var k [24]byte // K1 || K2 || K1
		copy(k[:16], key)
		copy(k[16:], key[:8])
		b, err := des.NewTripleDESCipher(k[:])
		clear(k[:])
		if err != nil {
			return nil, fmt.Errorf("keys: 3DES: %w", ErrKeyLength)
		}
		return b, nil
	default: // SM4
		b, err := sm4.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("keys: SM4: %w", ErrKeyLength)
		}
		return b, nil
	}
}

func ecb(alg Algorithm, key, data []byte, encrypt bool) ([]byte, error) {
	b, err := newBlock(alg, key)
	if err != nil {
		return nil, err
	}
	bs := b.BlockSize()
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes, %s block is %d", ErrDataLength, len(data), alg, bs)
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += bs {
		if encrypt {
			b.Encrypt(out[i:i+bs], data[i:i+bs])
		} else {
			b.Decrypt(out[i:i+bs], data[i:i+bs])
		}
	}
	return out, nil
}

// EncryptECB encrypts data (a non-empty whole number of blocks) in ECB mode.
// 3DES keys are 16 bytes and used as 2-key 3DES (K1, K2, K1).
func EncryptECB(alg Algorithm, key, data []byte) ([]byte, error) {
	return ecb(alg, key, data, true)
}

// DecryptECB is the inverse of [EncryptECB].
func DecryptECB(alg Algorithm, key, data []byte) ([]byte, error) {
	return ecb(alg, key, data, false)
}

// Diversify derives a child key from a 16-byte master key and one 8-byte
// factor, PBOC 2.0 style:
//
//   - 3DES: left = 3DES_master(factor), right = 3DES_master(NOT factor);
//     child = left || right.
//   - SM4: child = SM4_master(factor || NOT factor).
//
// NOT is bitwise complement. Which card data the SSSE application uses as
// factors is unconfirmed (assumption A1 in the package doc); the firmware
// profile names the inputs. Diversify does not adjust DES parity bits.
func Diversify(alg Algorithm, master, factor []byte) ([]byte, error) {
	if err := checkKey(alg, master); err != nil {
		return nil, err
	}
	if len(factor) != FactorSize {
		return nil, fmt.Errorf("%w: got %d bytes", ErrFactorLength, len(factor))
	}
	in := make([]byte, 2*FactorSize)
	copy(in, factor)
	for i := range FactorSize {
		in[FactorSize+i] = ^factor[i]
	}
	// For 3DES the two 8-byte halves are encrypted as two ECB blocks; for SM4
	// the 16 bytes are one block. Either way it is ECB over factor || NOT factor.
	out, err := EncryptECB(alg, master, in)
	clear(in)
	return out, err
}

// DiversifyPath applies [Diversify] once per level, in order: the key of
// level i is diversified with path[i] to give the key of level i+1. An empty
// path returns a copy of master. Intermediate keys are zeroed.
func DiversifyPath(alg Algorithm, master []byte, path [][]byte) ([]byte, error) {
	if err := checkKey(alg, master); err != nil {
		return nil, err
	}
	key := append([]byte(nil), master...)
	for i, f := range path {
		next, err := Diversify(alg, key, f)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("keys: diversification level %d: %w", i+1, err)
		}
		key = next
	}
	return key, nil
}

// PadISO9797M2 returns a new slice holding data followed by ISO/IEC 9797-1
// padding method 2: one 0x80 byte, then 0x00 bytes up to a whole number of
// blockSize-byte blocks. At least one byte is always added.
func PadISO9797M2(data []byte, blockSize int) []byte {
	n := len(data) + 1
	if r := n % blockSize; r != 0 {
		n += blockSize - r
	}
	out := make([]byte, n)
	copy(out, data)
	out[len(data)] = 0x80
	return out
}

// ZeroPadToBlock returns a new slice holding data right-padded with 0x00 to a
// whole number of alg blocks (no bytes are added when data is already
// aligned and non-empty; empty data gives one zero block).
func ZeroPadToBlock(alg Algorithm, data []byte) ([]byte, error) {
	if err := checkAlg(alg); err != nil {
		return nil, err
	}
	bs := alg.BlockSize()
	n := len(data)
	if n == 0 || n%bs != 0 {
		n += bs - n%bs
	}
	out := make([]byte, n)
	copy(out, data)
	return out, nil
}

// alignedInput is a padding.Padding that adds nothing: ComputeMACN pads and
// folds the IV in itself before handing whole blocks to gmsm/cbcmac.
type alignedInput int

func (p alignedInput) BlockSize() int                               { return int(p) }
func (p alignedInput) Pad(src []byte) []byte                        { return src }
func (p alignedInput) Unpad(src []byte) ([]byte, error)             { return src, nil }
func (p alignedInput) ConstantTimeUnpad(src []byte) ([]byte, error) { return src, nil }

func newAlignedInput(blockSize uint) padding.Padding { return alignedInput(blockSize) }

// ComputeMAC returns the 4-byte PBOC-style MAC of data under key:
//
//   - data is padded with ISO/IEC 9797-1 padding method 2 (0x80 then 0x00s,
//     at least one byte);
//   - CBC chaining starts from iv, which is right-padded with 0x00 to the
//     block size (8 bytes for 3DES, 16 for SM4); a nil or empty iv is all
//     zeros; an iv longer than a block is an error;
//   - 3DES: ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC):
//     single-DES CBC under K1 (the left half of the key), then the last block
//     is DES-decrypted under K2 and DES-encrypted under K1;
//   - SM4: ISO/IEC 9797-1 MAC algorithm 1 (plain CBC-MAC);
//   - the MAC is the leftmost 4 bytes of the final block.
//
// The MAC IV convention (card challenge) is assumption A3 in the package doc.
func ComputeMAC(alg Algorithm, key, iv, data []byte) ([]byte, error) {
	return ComputeMACN(alg, key, iv, data, MACSize)
}

// ComputeMACN is [ComputeMAC] returning the leftmost n bytes of the final
// block (1 <= n <= block size), e.g. 8 for a full retail MAC.
func ComputeMACN(alg Algorithm, key, iv, data []byte, n int) ([]byte, error) {
	if err := checkKey(alg, key); err != nil {
		return nil, err
	}
	bs := alg.BlockSize()
	if len(iv) > bs {
		return nil, fmt.Errorf("%w: %d bytes, %s block is %d", ErrIVLength, len(iv), alg, bs)
	}
	if n < 1 || n > bs {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrMACLength, n, bs)
	}
	msg := PadISO9797M2(data, bs)
	defer clear(msg)
	return macAligned(alg, key, iv, msg, n)
}

// macAligned runs the MAC chain over msg, which is already padded to whole
// blocks (callers have checked alg, key, iv and n). Padding is kept outside
// so the tests can reproduce the ISO/IEC 9797-1 Annex B padding-method-1
// values through this same chain.
func macAligned(alg Algorithm, key, iv, msg []byte, n int) ([]byte, error) {
	bs := alg.BlockSize()
	if len(msg) == 0 || len(msg)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes to MAC, %s block is %d", ErrDataLength, len(msg), alg, bs)
	}
	// gmsm/cbcmac always chains from an all-zero IV and has no IV parameter.
	// CBC from IV v over blocks B1..Bn is, by definition, E(v XOR B1), then
	// E(prev XOR Bi): exactly CBC from a zero IV over (B1 XOR v), B2..Bn. So we
	// XOR the (zero-extended) IV into the first padded block of a copy and let
	// cbcmac run with its own padding switched off.
	in := append([]byte(nil), msg...)
	defer clear(in)
	subtle.XORBytes(in[:len(iv)], in[:len(iv)], iv)

	var m cbcmac.BlockCipherMAC
	switch alg {
	case TDES:
		// K1 = key[:8] for the CBC chain and the final encryption,
		// K2 = key[8:] for the final decryption.
		m = cbcmac.NewANSIRetailMACWithPadding(des.NewCipher, key[:8], key[8:], n, newAlignedInput)
	default: // SM4
		b, err := newBlock(alg, key)
		if err != nil {
			return nil, err
		}
		m = cbcmac.NewCBCMACWithPadding(b, n, newAlignedInput)
	}
	return m.MAC(in), nil
}

// VerifyMAC recomputes the MAC (len(mac) bytes, 1..block size) and compares
// it with mac in constant time.
func VerifyMAC(alg Algorithm, key, iv, data, mac []byte) (bool, error) {
	got, err := ComputeMACN(alg, key, iv, data, len(mac))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, mac) == 1, nil
}
