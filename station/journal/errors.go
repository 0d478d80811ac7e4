package journal

import "errors"

// Errors. Errors returned by the Store wrap one of these (or a bbolt or
// file system error); test with errors.Is.
var (
	// ErrNotFound: no entry with that OpID.
	ErrNotFound = errors.New("journal: operation not found")
	// ErrMismatch: Begin found an entry with that OpID whose Kind, CardID,
	// PayloadDigest or Profile differs from the request.
	ErrMismatch = errors.New("journal: entry does not match the request")
	// ErrFinished: the entry is done, failed or abandoned; no step,
	// interruption or status may be recorded on it.
	ErrFinished = errors.New("journal: operation already finished")
	// ErrNotRunning: a step was recorded on an interrupted entry; Begin it
	// again first.
	ErrNotRunning = errors.New("journal: operation is not running (Begin it again to resume)")
	// ErrStale: a write carried an attempt token that is no longer the
	// entry's: another Begin took the operation over since.
	ErrStale = errors.New("journal: another attempt has taken this operation over")
	// ErrSequence: a step was finished that was not started, or an entry
	// was marked done while a step was still started.
	ErrSequence = errors.New("journal: step out of sequence")
	// ErrInvalid: a field is malformed.
	ErrInvalid = errors.New("journal: invalid field")
	// ErrSensitive: a free-text field looks like it holds a citizen ID
	// number.
	ErrSensitive = errors.New("journal: field looks like a citizen ID number")
	// ErrLocked: another process (or another Store in this process) holds
	// the journal file.
	ErrLocked = errors.New("journal locked by another process")
	// ErrDamaged: the journal file (or one entry in it) cannot be read: it
	// is truncated, overwritten or not a journal. The file is left as it
	// is for a technician to inspect or move away.
	ErrDamaged = errors.New("journal file is damaged")
	// ErrUnsafePath: the journal path is a symlink or not a regular file.
	ErrUnsafePath = errors.New("journal path is a symlink or not a regular file")
	// ErrReadOnly: a write on a journal opened with OpenReadOnly.
	ErrReadOnly = errors.New("journal opened read-only")
)
