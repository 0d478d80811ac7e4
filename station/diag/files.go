package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/journal"
	"ssstation/station/store"
)

// Removed replaces a secret in a redacted configuration.
const Removed = "(removed)"

// RedactConfig returns the configuration as JSON values with its secrets
// removed: the API tokens' hashes (a hash of a short token can be guessed
// back). Paths, reader names, roles and origins stay: they are what a
// technician checks.
func RedactConfig(c *config.Config) map[string]any {
	raw, err := json.Marshal(c)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return map[string]any{"error": err.Error()}
	}
	if d, ok := m["daemon"].(map[string]any); ok {
		if toks, ok := d["tokens"].([]any); ok {
			for _, t := range toks {
				if tm, ok := t.(map[string]any); ok {
					for k := range tm {
						if k != "name" && k != "role" && k != "origins" {
							tm[k] = Removed
						}
					}
				}
			}
		}
	}
	return m
}

// checkJournal opens sscard's journal read-only and counts its entries.
func checkJournal(path string) FileHealth {
	h := FileHealth{Path: path, State: "not checked"}
	if path == "" {
		return h
	}
	j, err := journal.OpenReadOnly(path, journal.Options{})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		h.State, h.Detail = "absent", "no operation was recorded yet"
		return h
	case errors.Is(err, journal.ErrLocked):
		h.State, h.Detail = "locked", "another program has the journal open for writing"
		return h
	case err != nil:
		h.State, h.Detail = "damaged", err.Error()
		return h
	}
	defer j.Close()
	entries, err := j.List(0)
	if err != nil {
		h.State, h.Detail = "damaged", err.Error()
		return h
	}
	countEntries(&h, entries)
	return h
}

func countEntries(h *FileHealth, entries []*journal.Entry) {
	h.State, h.Entries = "ok", len(entries)
	for _, e := range entries {
		switch {
		case e.Status == journal.StatusDamaged:
			h.Damaged++
		case e.Status.Unfinished():
			h.Unfinished++
		}
	}
	if h.Damaged > 0 {
		h.State, h.Detail = "damaged", fmt.Sprintf("%d entries cannot be read", h.Damaged)
	}
}

// checkStore opens stationd's store read-only: its journal and the audit
// chain. While stationd runs the store is locked: that is a state, and
// the daemon's own diagnostics cover it.
func checkStore(path string) FileHealth {
	h := FileHealth{Path: path, State: "not checked"}
	if path == "" {
		return h
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		h.State, h.Detail = "absent", "stationd has not run here yet"
		return h
	}
	st, err := store.Open(path, store.Options{ReadOnly: true, Timeout: 500e6})
	switch {
	case errors.Is(err, store.ErrLocked):
		h.State, h.Detail = "locked", "stationd has the store open: ask it (GET /v1/diagnostics)"
		return h
	case err != nil:
		h.State, h.Detail = "damaged", err.Error()
		return h
	}
	defer st.Close()
	n, verr := audit.Verify(st.DB())
	ok := verr == nil
	h.AuditOK = &ok
	h.State, h.Entries = "ok", n
	if verr != nil {
		h.Detail = verr.Error()
	}
	if j, err := journal.OpenDB(st.DB(), journal.Options{}); err == nil {
		if entries, err := j.List(0); err == nil {
			e := FileHealth{}
			countEntries(&e, entries)
			h.Unfinished, h.Damaged = e.Unfinished, e.Damaged
		}
	}
	if h.Damaged > 0 && ok {
		h.State, h.Detail = "damaged", fmt.Sprintf("%d journal entries cannot be read", h.Damaged)
	}
	return h
}
