// Package keys holds host-side key material for social security (SSSE,
// PBOC-style) IC cards and the [Provider] interface card operations use to
// get cryptograms without ever seeing a key.
//
// # Pieces
//
//   - Pure functions, shared with the virtual card (which holds its own
//     diversified keys): [EncryptECB], [DecryptECB], [Diversify],
//     [DiversifyPath], [ComputeMAC] / [ComputeMACN] / [VerifyMAC],
//     [PadISO9797M2], [ExternalAuthData], [KeyCheckValue].
//   - [Provider]: Encrypt and MAC under a named master key ([KeyName] on an
//     [Algorithm]) diversified along a path of 8-byte factors. There is no
//     method that returns a key: today the implementation is the
//     [SoftwareKeystore], later a PSAM card or an HSM.
//   - [SoftwareKeystore]: keys in process memory, loaded from a JSON file
//     that must not be readable by group or others ([LoadSoftwareKeystore]),
//     or the built-in public [TestKeys] ([NewTestKeystore],
//     [WriteTestKeystoreFile]). Close zeroes the keys. Its String, Format,
//     MarshalJSON and LogValue forms, and every error from this package,
//     never contain key bytes.
//
// # Assumptions
//
// card-reference section 5 marks most of the SSSE key handling as unconfirmed.
// Each choice below is named so code and profiles can refer to it; change
// it here (and in the firmware profile) when a real card or specification
// settles it. The firmware profiles (firmware-profiles/*.yaml) name the
// same choices; their names are given in brackets.
//
// A1 (diversification inputs) [profile A-DIV, scheme pboc-div-v1]. Per-card keys are derived from issuer master
// keys PBOC 2.0 style, one level per 8-byte factor: 3DES child = 3DES_K(F) ||
// 3DES_K(NOT F); SM4 child = SM4_K(F || NOT F). Which card data the SSSE
// application uses as factors (card number, card identification code,
// province / city levels; how they are cut or padded to 8 bytes) is
// unconfirmed: the firmware profile names the inputs and builds
// [Request.Path]; this package only applies the levels in order.
//
// A2 (external authentication cryptogram) [profile A-EXT-AUTH, scheme
// challenge-ecb-16]. The host cryptogram for EXTERNAL
// AUTHENTICATE (`00 82 00 kk 10 <16 bytes>` in public code) is the ECB
// encryption, under the requested key, of the card's GET CHALLENGE answer
// right-padded with 00 to 16 bytes ([ExternalAuthData],
// [ExternalAuthCryptogram]). For SM4 that is one block; for 3DES it is two
// blocks, the second being the encryption of eight 00 bytes — plausible
// only because the observed Lc is 16, and the least certain of these
// assumptions.
//
// A3 (MAC initial vector) [profile A-MAC / A-MAC-SM4, iv: challenge]. MAC chaining starts from the card's GET CHALLENGE
// answer (4 or 8 bytes) right-padded with 00 to the block size (8 bytes for
// 3DES, 16 for SM4), the PBOC convention; callers pass that IV to
// [Provider.MAC]. An empty IV means all zeros.
//
// A4 (MAC algorithm) [profile A-MAC / A-MAC-SM4, scheme pboc-mac-v1]. ISO/IEC 9797-1 padding method 2 (0x80 then 00s, always
// at least one byte); 3DES cards use MAC algorithm 3 (ANSI X9.19 retail MAC:
// single-DES CBC under the left key half K1, then DES⁻¹ under K2 and DES
// under K1); SM4 cards use MAC algorithm 1 (CBC-MAC); the MAC is the
// leftmost 4 bytes. The PBOC convention, unconfirmed for SSSE.
//
// A5 (key form). 3DES keys are 16-byte 2-key triple DES (K1, K2, K1); SM4
// keys are 16 bytes. Whether a card uses 3DES or SM4 comes from the firmware
// profile (3.0 cards add SM algorithms), so a keystore may hold each
// [KeyName] on both algorithms.
//
// A6 (key names) [profile A-MAC-KEYS, A-INT-AUTH-FACTOR]. The logical key names ([KeyRKSSSE], [KeyEFWrite], ...)
// follow the operations in card-reference sections 3 and 7 (e.g. EXTERNAL
// AUTHENTICATE with key `0A` = RKSSSE before reading, `04` before writing
// EF06, `06` before PIN reload). Which physical card key each one is, and
// whether INTERNAL AUTHENTICATE's 8-byte factor is one more diversification
// level of [KeyInternalAuth], is the profile's business.
//
// # No provider
//
// A station configured without keys has [None]: reads work, and every
// operation that needs a key fails with [ErrNoProvider]. Card operations
// call [Ready] before their first APDU, so they refuse before touching the
// card; test keys are never a silent default.
//
// # Test keys
//
// [TestKeys] are public values derived from "TEST KEY -- NOT FOR
// PRODUCTION" (SHA-256 of that label, algorithm and name; DES parity set on
// 3DES keys), pinned by the tests. A keystore built from them, from a file
// marked "test_keys": true, or holding any one of them reports
// [SoftwareKeystore.IsTestKeys] and prints "TEST KEYS".
package keys
