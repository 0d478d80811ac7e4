package conform

import (
	"context"
	"errors"
	"fmt"

	"ssstation/cardapp"
)

// destructivePlan is the write-side checks: only on a blank card. The card
// is written with the fictional holder, every record read back and
// compared byte for byte (cardapp.Personalize does both), and read again as
// the counter would; it is never locked, so the batch's card can be
// checked again (UPDATE RECORD is repeatable before the lock).
func (r *runner) destructivePlan() []step {
	blank := false
	return []step{
		{"blank card check (read basic info)", func(r *runner, ctx context.Context) Check {
			app, err := cardapp.NewApp(r.o.Card, r.p, cardapp.Options{Keys: r.o.Keys})
			if err != nil {
				return Check{Verdict: Fail, Detail: err.Error()}
			}
			info, err := app.ReadBasicInfo(ctx)
			c := Check{Command: "the station's basic read", Expected: "a blank card: no holder on it"}
			switch {
			case err != nil:
				c.Verdict, c.Got = Fail, "error: "+err.Error()
			case !info.Blank:
				c.Verdict, c.Got, c.Detail = Fail, "a personalized card", "refused: the write-side checks run only on a blank card; nothing was written"
			default:
				blank = true
				c.Verdict, c.Got = Pass, "blank card "+info.CardID
			}
			return c
		}},
		{"personalize (write, read back, no lock)", func(r *runner, ctx context.Context) Check {
			c := Check{Command: "the station's personalization: INTERNAL AUTHENTICATE, EXTERNAL AUTHENTICATE (write key), UPDATE RECORD with MAC for each record, READ RECORD of each",
				Expected: "every command 9000; every record read back equal to what was written"}
			if !blank {
				c.Verdict, c.Detail = Skip, "not a blank card"
				return c
			}
			if !r.keys {
				c.Verdict, c.Detail = Fail, "no key provider: the write-side checks need the write and internal authentication keys"
				return c
			}
			app, err := cardapp.NewApp(r.o.Card, r.p, cardapp.Options{Keys: r.o.Keys})
			if err != nil {
				c.Verdict, c.Detail = Fail, err.Error()
				return c
			}
			res, err := app.Personalize(ctx, r.o.Holder, false, nil)
			if err != nil {
				c.Verdict, c.Got = Fail, "error: "+err.Error()
				var ve *cardapp.ValidationError
				if errors.As(err, &ve) {
					c.Detail = "the fictional holder does not fit this profile"
				}
				return c
			}
			c.Verdict = Pass
			c.Got = fmt.Sprintf("%d records written, %d read back equal", res.Written, res.Verified)
			return c
		}},
		{"read basic info after writing", func(r *runner, ctx context.Context) Check {
			c := Check{Command: "the station's basic read", Expected: "a personalized card (not blank)"}
			if !blank {
				c.Verdict, c.Detail = Skip, "not a blank card"
				return c
			}
			app, err := cardapp.NewApp(r.o.Card, r.p, cardapp.Options{Keys: r.o.Keys})
			if err != nil {
				c.Verdict, c.Detail = Fail, err.Error()
				return c
			}
			info, err := app.ReadBasicInfo(ctx)
			switch {
			case err != nil:
				c.Verdict, c.Got = Fail, "error: "+err.Error()
			case info.Blank:
				c.Verdict, c.Got = Fail, "still blank"
			default:
				c.Verdict, c.Got = Pass, "personalized, state "+info.State
			}
			return c
		}},
	}
}
