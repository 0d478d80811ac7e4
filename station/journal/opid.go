package journal

import (
	"crypto/rand"
	"encoding/hex"
)

// NewOpID returns a random operation id: 16 random bytes as 32 lower-case
// hex characters (lower case, so that it is not mistaken for a card id).
// An id that happens to hold an 18-digit run (about 3 in 1000 draws) is
// drawn again, since Begin would refuse it (LooksLikeIDNumber).
func NewOpID() string {
	for {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		if id := hex.EncodeToString(b[:]); !LooksLikeIDNumber(id) {
			return id
		}
	}
}
