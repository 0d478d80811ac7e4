package keys

import (
	"context"
	"errors"
	"fmt"
)

// KeyName is a logical issuer key. The firmware profile maps card
// operations to key names; a Provider maps key names to key material.
type KeyName string

// The logical issuer keys card operations ask for.
const (
	KeyInternalAuth KeyName = "internal-auth" // card authentication (INTERNAL AUTHENTICATE)
	KeyRKSSSE       KeyName = "rkssse"        // RKSSSE: EXTERNAL AUTHENTICATE key 0A before reading (3.0 cards)
	KeyEFWrite      KeyName = "ef-write"      // UPDATE RECORD / UPDATE BINARY with MAC
	KeyPINReload    KeyName = "pin-reload"    // PIN RELOAD
	KeyPINUnblock   KeyName = "pin-unblock"   // PIN UNBLOCK
	KeyAppBlock     KeyName = "app-block"     // APPLICATION BLOCK
	KeyAppUnblock   KeyName = "app-unblock"   // APPLICATION UNBLOCK
	KeyCardBlock    KeyName = "card-block"    // CARD BLOCK
	KeyFinalize     KeyName = "finalize"      // personalization finish
)

// KnownKeyNames returns every logical key name defined above, in a fixed order.
func KnownKeyNames() []KeyName {
	return []KeyName{
		KeyInternalAuth, KeyRKSSSE, KeyEFWrite, KeyPINReload, KeyPINUnblock,
		KeyAppBlock, KeyAppUnblock, KeyCardBlock, KeyFinalize,
	}
}

// KeyID identifies one master key: a logical name on one algorithm. A
// keystore may hold the same name on both algorithms.
type KeyID struct {
	Name      KeyName
	Algorithm Algorithm
}

func (id KeyID) String() string { return string(id.Name) + "/" + string(id.Algorithm) }

// Request names the key a cryptogram is to be computed under.
type Request struct {
	Key       KeyName
	Algorithm Algorithm
	Path      [][]byte // diversification factors, level 1..n, each 8 bytes; empty = use the master key itself
}

// ID returns the (name, algorithm) pair of the master key.
func (r Request) ID() KeyID { return KeyID{Name: r.Key, Algorithm: r.Algorithm} }

// String describes the request without its factors (they are card data,
// which may be personal).
func (r Request) String() string {
	return fmt.Sprintf("%s (%d diversification levels)", r.ID(), len(r.Path))
}

// Validate checks the algorithm, that a key name is given, and that every
// factor is 8 bytes.
func (r Request) Validate() error {
	if err := checkAlg(r.Algorithm); err != nil {
		return err
	}
	if r.Key == "" {
		return errors.New("keys: request names no key")
	}
	for i, f := range r.Path {
		if len(f) != FactorSize {
			return fmt.Errorf("%w: level %d is %d bytes", ErrFactorLength, i+1, len(f))
		}
	}
	return nil
}

// Provider is what card operations ask for cryptograms; implementations keep
// the key bytes to themselves (a software keystore now, a PSAM card later),
// so there is no method that returns a key.
type Provider interface {
	// Encrypt ECB-encrypts data (a whole number of blocks) under the key
	// diversified along req.Path.
	Encrypt(ctx context.Context, req Request, data []byte) ([]byte, error)
	// MAC returns the 4-byte PBOC-style MAC: ISO 9797-1 padding method 2,
	// CBC chained from iv (8 bytes for 3DES, 16 for SM4; shorter IVs are
	// right-padded with 00), 3DES -> ISO 9797-1 MAC algorithm 3 (retail MAC:
	// single-DES CBC with left half, final 3DES), SM4 -> CBC-MAC
	// (algorithm 1). Leftmost 4 bytes. See [ComputeMAC].
	MAC(ctx context.Context, req Request, iv, data []byte) ([]byte, error)
	Close() error
}

// ErrKeyNotFound is returned (wrapped in a [*KeyNotFoundError]) when a
// provider holds no key for the requested (name, algorithm).
var ErrKeyNotFound = errors.New("keys: key not found")

// ErrClosed is returned by a provider after Close.
var ErrClosed = errors.New("keys: provider is closed")

// KeyNotFoundError says which key is missing. errors.Is(err, ErrKeyNotFound)
// holds for it.
type KeyNotFoundError struct {
	Key       KeyName
	Algorithm Algorithm
}

func (e *KeyNotFoundError) Error() string {
	return fmt.Sprintf("%v: %s on %s", ErrKeyNotFound, e.Key, e.Algorithm)
}

// Is makes errors.Is(err, ErrKeyNotFound) true.
func (e *KeyNotFoundError) Is(target error) bool { return target == ErrKeyNotFound }

// ExternalAuthDataSize is the length of the EXTERNAL AUTHENTICATE data
// field seen in public code (`00 82 00 kk 10 <16 bytes>`).
const ExternalAuthDataSize = 16

// ExternalAuthData returns the plaintext whose ECB encryption is the
// EXTERNAL AUTHENTICATE cryptogram under assumption A2 of the package doc:
// the card's GET CHALLENGE answer right-padded with 00 to
// [ExternalAuthDataSize] bytes (two 3DES blocks or one SM4 block); a longer
// challenge is padded to the next multiple of 16 bytes. The virtual
// card uses this too, so both sides stay on the same assumption.
func ExternalAuthData(challenge []byte) []byte {
	n := ExternalAuthDataSize
	if len(challenge) > n {
		n = (len(challenge) + ExternalAuthDataSize - 1) / ExternalAuthDataSize * ExternalAuthDataSize
	}
	out := make([]byte, n)
	copy(out, challenge)
	return out
}

// ExternalAuthCryptogram asks p for the host cryptogram for EXTERNAL
// AUTHENTICATE: Encrypt(req, ExternalAuthData(challenge)), 16 bytes for the
// usual 8-byte challenge on either algorithm. This form is assumption A2
// (unconfirmed).
func ExternalAuthCryptogram(ctx context.Context, p Provider, req Request, challenge []byte) ([]byte, error) {
	if len(challenge) == 0 {
		return nil, errors.New("keys: empty challenge")
	}
	return p.Encrypt(ctx, req, ExternalAuthData(challenge))
}

// ErrNoProvider is returned when an operation needs a key and the station
// has no key provider configured. Reading a card needs none; proving it
// genuine, writing it and the PIN commands that carry a cryptogram do.
var ErrNoProvider = errors.New("no key provider configured")

// None is the provider of a station configured without keys: every call
// fails with [ErrNoProvider]. Card operations check [Ready] first, so they
// refuse before sending any APDU; None only makes sure that a caller that
// forgot to does not crash on a nil provider.
var None Provider = noProvider{}

type noProvider struct{}

func (noProvider) Encrypt(context.Context, Request, []byte) ([]byte, error) {
	return nil, ErrNoProvider
}

func (noProvider) MAC(context.Context, Request, []byte, []byte) ([]byte, error) {
	return nil, ErrNoProvider
}

func (noProvider) Close() error   { return nil }
func (noProvider) String() string { return "no key provider" }

// Ready reports whether p can compute anything: [ErrNoProvider] for a nil
// provider and for [None]. It is the one place that decides "no keys", so
// card operations call it before their first APDU.
func Ready(p Provider) error {
	if p == nil {
		return ErrNoProvider
	}
	if _, ok := p.(noProvider); ok {
		return ErrNoProvider
	}
	return nil
}
