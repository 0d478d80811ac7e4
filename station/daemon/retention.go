package daemon

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"ssstation/station/journal"
	"ssstation/station/service"
)

// DefaultOperationRetention is how long a finished operation stays in the
// store (GET /v1/operations/{id} after it left memory): the journal's
// default retention, for the same reason — long enough to answer for an
// operation, short enough that the file does not grow for ever.
const DefaultOperationRetention = journal.DefaultRetention

// pruneEvery is how often a running daemon prunes (it prunes at start too).
const pruneEvery = time.Hour

// retention is the configured retention; negative keeps everything.
func (d *Daemon) retention() time.Duration {
	if d.opts.OperationRetention == 0 {
		return DefaultOperationRetention
	}
	return d.opts.OperationRetention
}

// pruneStoredOps deletes the stored operations that ended done, failed or
// cancelled and were last updated before now minus the retention. An
// interrupted operation, or one stored without a final state, is kept, as
// the journal keeps its unfinished entries. It returns how many were
// deleted.
func (d *Daemon) pruneStoredOps(now time.Time) (int, error) {
	keep := d.retention()
	if keep < 0 {
		return 0, nil
	}
	cutoff := now.Add(-keep)
	n := 0
	err := d.opts.Store.DB().Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOps)
		if b == nil {
			return nil
		}
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var op struct {
				State   string    `json:"state"`
				Updated time.Time `json:"updated"`
			}
			if json.Unmarshal(v, &op) != nil {
				return nil // not ours to judge: left for a person to look at
			}
			switch service.State(op.State) {
			case service.StateDone, service.StateFailed, service.StateCancelled:
			default:
				// Interrupted: its journal entry stays unfinished (and is
				// never pruned) until resumed, so its trace stays too.
				return nil
			}
			if op.Updated.Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

func (d *Daemon) prune(now time.Time) {
	n, err := d.pruneStoredOps(now)
	switch {
	case err != nil:
		d.log.Warn().Str("event", "operations.prune").Msg("stored operations could not be pruned")
	case n > 0:
		d.log.Info().Str("event", "operations.prune").Int("deleted", n).Msg("old finished operations pruned from the store")
	}
}
