// Package psam is the [keys.Provider] whose keys live in a PSAM card in a
// second reader (card-reference §5: keys never leave the PSAM). The host sends
// the key's slot, the diversification factors and the data; the PSAM
// diversifies its master key, computes the cryptogram or MAC and forgets
// the session key. See docs/psam.md.
//
// # Protocol (project-defined; assumption P1 in docs/psam.md)
//
// The social security PSAM's own command coding is not public. This package
// follows the PBOC / transport PSAM convention:
//
//	SELECT           00 A4 04 00 09 D1560000055053414D     -> 9000
//	READ BINARY      00 B0 96 00 06                        -> 6-byte serial (BCD), 9000
//	INIT FOR DESCRYPT 80 1A usage index Lc factors(8·n)    -> 9000 | 6A88 | 6700
//	CIPHER DATA      80 FA 00 00 Lc data Le                -> ECB cryptogram, 9000
//	CIPHER DATA      80 FA 05 00 Lc IV||message 04         -> 4-byte MAC, 9000
//
// The (usage, index) pair addressing each logical key comes from a [Table]:
// [KeyTable] by default (project-defined codes), or a deployment's own
// loaded with [LoadKeyTable]. The virtual PSAM in internal/cardsim/psam uses the
// same table and constants.
//
// # Wiring
//
//	card, _ := pc.Connect(ctx, psamReader, pcsc.ConnectOptions{Share: pcsc.ShareShared, OnClose: pcsc.LeaveCard})
//	var opts []psam.Option
//	if path != "" { // a deployment's own usage codes; psam.KeyTable otherwise
//		table, err := psam.LoadKeyTable(path)
//		...
//		opts = append(opts, psam.WithKeyTable(table))
//	}
//	prov := psam.New(card, opts...)
//	defer card.Close() // the Provider does not close the card
package psam
