package cardapp

import (
	"context"
	"fmt"

	"ssstation/cardapp/records"
)

// ReadItems reads the named record items (profiles.ItemCardID,
// ItemSpecVersion, ItemSSN, ...) and nothing else, in the order given, and
// returns their decoded values by item. It is for flows that read a chosen
// set, such as a reader that reads only what the public Mingwah trace reads
// (card-reference §9) or a replayed transcript; ReadBasicInfo and
// ReadFullInfo read the standard sets. No genuineness check is made here.
func (a *App) ReadItems(ctx context.Context, items ...string) (map[string]string, error) {
	out := make(map[string]string, len(items))
	for _, item := range items {
		_, rec, ok := a.p.Record(item)
		if !ok {
			return nil, opError("read items", fmt.Errorf("%w: profile %s has no %s record", ErrNotSupported, a.p.Name, item))
		}
		v, err := a.readRecord(ctx, item)
		if err != nil {
			return nil, opError("read items", err)
		}
		s, err := records.Decode(rec.Type, v)
		if err != nil {
			return nil, opError("read items", fmt.Errorf("%s: %w", item, err))
		}
		out[item] = s
	}
	return out, nil
}
