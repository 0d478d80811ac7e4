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

// transmit is the one transmit loop. maxData is the largest data field the
// reader takes in one APDU (≤255: short APDUs with chaining).
func transmit(ctx context.Context, t rawTransmitter, cmd apdu.Command, maxData int) (apdu.Response, error) {
	op := cmd.Label()
	if err := cmd.Validate(); err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	extended := maxData > apdu.MaxShortData
	if !extended && cmd.Ne > apdu.MaxShortNe {
		// The reader cannot carry an extended Le: ask for 256 and let 61xx bring the rest.
		cmd.Ne = apdu.MaxShortNe
	}

	// Command chaining (ISO/IEC 7816-4 §5.3.3) for data the reader cannot
	// take in one APDU: every block but the last has CLA b5 set and must be
	// acknowledged with 9000.
	limit := apdu.MaxShortData
	if extended {
		limit = maxData
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

	resp, err := exchangeOnce(ctx, t, cmd)
	if err != nil {
		return apdu.Response{}, err
	}
	for resends := 0; ; resends++ {
		le, ok := resp.SW.WrongLe()
		if !ok {
			break
		}
		if resends == maxWrongLe {
			return apdu.Response{}, fmt.Errorf("%s: %w: 6Cxx answered %d times", op, ErrCardMisbehaves, resends+1)
		}
		again := cmd
		again.Ne = le
		if resp, err = exchangeOnce(ctx, t, again); err != nil {
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

// getResponseCLA keeps the logical channel of the command (ISO/IEC 7816-4
// §5.4.1): channels 0-3 in b1-b2 of a first-interindustry class, 4-19 in
// b1-b4 of a further-interindustry class.
func getResponseCLA(cla byte) byte {
	if cla&0x40 != 0 {
		return 0x40 | cla&0x0F
	}
	return cla & 0x03
}
