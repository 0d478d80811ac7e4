package pcsc

import (
	"context"
	"errors"
	"fmt"

	"ssstation/pcsc/apdu"
)

// Caps against a misbehaving card (OpenSC issues 632 and 1731: endless
// 61xx loops). A real card never comes near them.
const (
	MaxGetResponses = 256
	MaxResponseSize = 1 << 20
	maxWrongLe      = 2 // 6Cxx resends per command
)

// ErrCardMisbehaves is returned when a card breaks a cap of the loop.
var ErrCardMisbehaves = errors.New("card exceeds the transmit loop's limits")

// ErrNoChaining is returned for data that does not fit in one APDU when
// the command's class does not allow command chaining.
var ErrNoChaining = errors.New("the data does not fit in one APDU and the class does not allow command chaining")

// link is what the transmit loop must know about the connection.
type link struct {
	// t0: the active protocol is T=0, whose TPDUs carry either command
	// data or response data, never both (ISO/IEC 7816-3 §12.2).
	t0 bool
	// maxData is the largest data field one APDU may carry: 255 (short
	// APDUs) unless the reader and the card both take extended lengths.
	maxData int
}

// shortLink is a link with short APDUs on T=1.
var shortLink = link{maxData: apdu.MaxShortData}

// transmit is the one transmit loop. The context is checked once, before
// the command's first APDU: once the card has been asked, the loop sees
// the exchange through (chained blocks, 6Cxx resend, GET RESPONSEs), since
// abandoning it would lose an answer the card has already produced.
func transmit(ctx context.Context, t rawTransmitter, cmd apdu.Command, l link) (apdu.Response, error) {
	op := cmd.Label()
	if err := cmd.Validate(); err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return apdu.Response{}, &Error{Op: "transmit " + op, Kind: KindCancelled, Err: err}
	}
	limit := apdu.MaxShortData
	if !l.t0 && l.maxData > apdu.MaxShortData {
		limit = l.maxData
	}
	extended := limit > apdu.MaxShortData
	if !extended && cmd.Ne > apdu.MaxShortNe {
		// The link cannot carry an extended Le: ask for 256 and let 61xx bring the rest.
		cmd.Ne = apdu.MaxShortNe
	}

	// Command chaining (ISO/IEC 7816-4 §5.3.3) for data the link cannot
	// take in one APDU: every block but the last has CLA b5 set and must be
	// acknowledged with 9000.
	if len(cmd.Data) > limit && !chainingAllowed(cmd) {
		return apdu.Response{}, fmt.Errorf("%s: %w (%d bytes, at most %d per APDU, class %02X)", op, ErrNoChaining, len(cmd.Data), limit, cmd.CLA)
	}
	for len(cmd.Data) > limit {
		part := cmd
		part.CLA |= 0x10
		part.Data = cmd.Data[:limit]
		part.Ne = 0
		resp, err := exchangeOnce(ctx, t, part)
		if err != nil {
			return apdu.Response{}, err
		}
		if !resp.SW.OK() {
			return resp, nil
		}
		cmd.Data = cmd.Data[limit:]
	}

	wire := cmd
	if l.t0 && len(wire.Data) > 0 {
		// T=0 case 4 goes as case 3: header, Lc and data, no Le. The card
		// announces its answer with 61xx and GET RESPONSE fetches it
		// (ISO/IEC 7816-3 §12.2.4; OpenSC's sc_apdu2bytes does the same).
		// A strict reader or card refuses, or garbles, the extra Le byte.
		wire.Ne = 0
	}
	resp, err := exchangeOnce(ctx, t, wire)
	if err != nil {
		return apdu.Response{}, err
	}
	for resends := 0; len(wire.Data) == 0; resends++ {
		// 6Cxx tells a case 1/2 command the right Le. A command with data
		// answered 6Cxx is not resent: sending its data again could repeat
		// what it did, so the status word goes back to the caller as is.
		le, ok := resp.SW.WrongLe()
		if !ok {
			break
		}
		if resends == maxWrongLe {
			return apdu.Response{}, fmt.Errorf("%s: %w: 6Cxx answered %d times", op, ErrCardMisbehaves, resends+1)
		}
		wire.Ne = le
		if resp, err = exchangeOnce(ctx, t, wire); err != nil {
			return apdu.Response{}, err
		}
	}

	data := resp.Data
	for n := 0; ; n++ {
		avail, ok := resp.SW.MoreData()
		if !ok {
			break
		}
		if n == MaxGetResponses {
			return apdu.Response{}, fmt.Errorf("%s: %w: more than %d GET RESPONSEs", op, ErrCardMisbehaves, MaxGetResponses)
		}
		gr := apdu.Command{CLA: getResponseCLA(cmd.CLA), INS: 0xC0, Ne: avail, Sensitive: cmd.Sensitive, Name: "GET RESPONSE"}
		if resp, err = exchangeOnce(ctx, t, gr); err != nil {
			return apdu.Response{}, err
		}
		if le, ok := resp.SW.WrongLe(); ok { // some T=0 cards answer GET RESPONSE with 6Cxx
			gr.Ne = le
			if resp, err = exchangeOnce(ctx, t, gr); err != nil {
				return apdu.Response{}, err
			}
		}
		if len(data)+len(resp.Data) > MaxResponseSize {
			return apdu.Response{}, fmt.Errorf("%s: %w: response exceeds %d bytes", op, ErrCardMisbehaves, MaxResponseSize)
		}
		data = append(data, resp.Data...)
	}
	return apdu.Response{Data: data, SW: resp.SW}, nil
}

func exchangeOnce(ctx context.Context, t rawTransmitter, cmd apdu.Command) (apdu.Response, error) {
	raw, err := cmd.Bytes()
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", cmd.Label(), err)
	}
	out, err := t.exchange(ctx, cmd, raw)
	if err != nil {
		return apdu.Response{}, err
	}
	resp, err := apdu.ParseResponse(out)
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", cmd.Label(), err)
	}
	return resp, nil
}

// Class byte kinds (ISO/IEC 7816-4 §5.4.1).
func firstInterindustry(cla byte) bool   { return cla&0xE0 == 0x00 }
func furtherInterindustry(cla byte) bool { return cla&0xC0 == 0x40 }
func proprietaryClass(cla byte) bool     { return cla&0x80 != 0 }

// secureMessaging reports an interindustry class that announces secure
// messaging: b4-b3 of a first-interindustry class, b6 of a
// further-interindustry one.
func secureMessaging(cla byte) bool {
	switch {
	case firstInterindustry(cla):
		return cla&0x0C != 0
	case furtherInterindustry(cla):
		return cla&0x20 != 0
	}
	return false
}

// chainingAllowed: command chaining is CLA b5 of an interindustry class.
// A proprietary class gives b5 no meaning (setting it could send another
// command) unless the command declares that its card takes it there
// (ProprietaryChaining), and under secure messaging each block would need
// its own cryptographic checksum, which the loop cannot compute: those are
// refused rather than chained.
func chainingAllowed(cmd apdu.Command) bool {
	if proprietaryClass(cmd.CLA) {
		return cmd.ProprietaryChaining
	}
	return !secureMessaging(cmd.CLA) && (firstInterindustry(cmd.CLA) || furtherInterindustry(cmd.CLA))
}

// getResponseCLA is the class of the GET RESPONSE that fetches a
// command's answer. GET RESPONSE is an interindustry command without
// secure messaging on the command's logical channel (ISO/IEC 7816-4
// §5.4.1): channels 0-3 in b2-b1 of a first-interindustry class, 4-19 in
// b4-b1 of a further-interindustry class (cla&0xC0 == 0x40). A proprietary
// class (b8 set: PBOC's 80 and 84) codes no channel that ISO defines; the
// station uses only the basic channel, and public PBOC and EMV traces
// answer 61xx after 80/84 commands with 00 C0, so b2-b1 are kept (00 for
// them; GlobalPlatform codes channels 0-3 there too) and b7 is never read
// as "further interindustry".
func getResponseCLA(cla byte) byte {
	if furtherInterindustry(cla) {
		return 0x40 | cla&0x0F
	}
	return cla & 0x03
}
