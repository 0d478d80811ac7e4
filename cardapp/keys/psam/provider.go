package psam

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"ssstation/cardapp/keys"
	"ssstation/pcsc/apdu"
)

// Card is the connection to the PSAM. *pcsc.Card satisfies it.
type Card interface {
	Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error)
	Transaction(ctx context.Context, body func(ctx context.Context) error) error
}

// Errors of the PSAM provider, for errors.Is. Key-not-found answers match
// [keys.ErrKeyNotFound]; a pulled PSAM matches pcsc.ErrCardRemoved; the
// status word itself is reachable with errors.As(err, &apdu.StatusWord).
var (
	// ErrNotPSAM: the card in the PSAM reader refused to select the PSAM
	// application (a wrong card, or a PSAM with another AID).
	ErrNotPSAM = errors.New("psam: the card does not select the PSAM application")
	// ErrNoSession: CIPHER DATA found no session key (6985): INIT FOR
	// DESCRYPT was lost, e.g. the PSAM was reset in between.
	ErrNoSession = errors.New("psam: the PSAM has no session key")
	// ErrBadResponse: the PSAM answered 9000 with data of the wrong length.
	ErrBadResponse = errors.New("psam: malformed PSAM response")
	// ErrTooLong: the data exceeds what one PSAM command takes.
	ErrTooLong = errors.New("psam: data too long for the PSAM")
	// ErrTooManyLevels: more than [MaxLevels] diversification factors.
	ErrTooManyLevels = errors.New("psam: too many diversification levels")
)

// OpError is every error of a Provider operation: what was asked (Op, Key)
// and at which APDU it failed (Step, empty when it failed before or around
// the APDUs). Its text never contains data bytes: no factors, messages,
// cryptograms or MACs.
type OpError struct {
	Op   string     // "encrypt", "MAC", "read serial number", "session"
	Key  keys.KeyID // zero for operations without a key
	Step string     // the APDU's name, e.g. "INIT FOR DESCRYPT"
	Err  error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("psam: ")
	b.WriteString(e.Op)
	if e.Key.Name != "" {
		b.WriteString(" under ")
		b.WriteString(e.Key.String())
	}
	if e.Step != "" {
		b.WriteString(": ")
		b.WriteString(e.Step)
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.Err.Error(), "psam: "))
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// Provider is a [keys.Provider] whose keys live in a PSAM card: the host
// sends the diversification factors and the data and gets back the
// cryptogram or the MAC; no key ever leaves the PSAM. Each Encrypt, MAC or
// SerialNumber is one PC/SC transaction (SELECT PSAM, INIT FOR DESCRYPT,
// CIPHER DATA); [Provider.Do] runs several in one. All APDUs of an
// operation are marked sensitive, so traces show headers and status words
// only. A Provider is safe for concurrent use: operations run one at a time.
type Provider struct {
	card     Card
	table    Table
	tableErr error
	sem      chan struct{} // a mutex whose wait honours ctx
	closed   bool          // guarded by sem
}

var _ keys.Provider = (*Provider)(nil)

// Option configures [New].
type Option func(*Provider)

// WithKeyTable makes the provider address keys through t instead of
// [KeyTable] (a deployment's own usage codes, from [LoadKeyTable]). An
// invalid table makes every operation fail with the validation error.
func WithKeyTable(t Table) Option {
	return func(p *Provider) {
		p.table = t.Clone()
		p.tableErr = t.Validate()
	}
}

// New returns a provider over card, the connection to the PSAM reader,
// which the caller owns (Close does not close it).
func New(card Card, opts ...Option) *Provider {
	p := &Provider{card: card, table: KeyTable.Clone(), sem: make(chan struct{}, 1)}
	for _, o := range opts {
		o(p)
	}
	return p
}

// KeyTable returns a copy of the table the provider uses.
func (p *Provider) KeyTable() Table { return p.table.Clone() }

// Has reports whether the key table maps (name, alg) to a PSAM slot. It
// does not ask the PSAM whether the slot holds a key.
func (p *Provider) Has(name keys.KeyName, alg keys.Algorithm) bool {
	_, _, ok := p.table.Lookup(name, alg)
	return ok
}

func (p *Provider) String() string { return fmt.Sprintf("psam.Provider{%d key slots}", len(p.table)) }

func (p *Provider) lock(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.closed {
		<-p.sem
		return keys.ErrClosed
	}
	return nil
}

func (p *Provider) unlock() { <-p.sem }

// Close marks the provider closed: later operations return
// [keys.ErrClosed]. It waits for an operation in progress, does not close
// the card, and always returns nil.
func (p *Provider) Close() error {
	p.sem <- struct{}{}
	p.closed = true
	<-p.sem
	return nil
}

// Encrypt implements [keys.Provider]: INIT FOR DESCRYPT with the request's
// slot and factors, then CIPHER DATA P1=00 on data (a non-empty whole
// number of blocks, at most [MaxEncryptData] bytes).
func (p *Provider) Encrypt(ctx context.Context, req keys.Request, data []byte) ([]byte, error) {
	op, err := p.planEncrypt(req, data)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = p.run(ctx, "encrypt", req.ID(), func(ctx context.Context, s *Session) (err error) {
		out, err = s.exec(ctx, op)
		return err
	})
	return out, err
}

// MAC implements [keys.Provider]: INIT FOR DESCRYPT, then CIPHER DATA P1=05
// on the IV (right-padded with 00 to the block size) followed by data. The
// PSAM pads and computes the 4-byte MAC as [keys.ComputeMAC] does.
func (p *Provider) MAC(ctx context.Context, req keys.Request, iv, data []byte) ([]byte, error) {
	op, err := p.planMAC(req, iv, data)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = p.run(ctx, "MAC", req.ID(), func(ctx context.Context, s *Session) (err error) {
		out, err = s.exec(ctx, op)
		return err
	})
	return out, err
}

// SerialNumber reads the PSAM's 6-byte serial (terminal) number and returns
// it as 12 hex digits (BCD digits on a conforming PSAM), for logs and
// support bundles.
func (p *Provider) SerialNumber(ctx context.Context) (string, error) {
	var sn string
	err := p.run(ctx, "read serial number", keys.KeyID{}, func(ctx context.Context, s *Session) (err error) {
		sn, err = s.SerialNumber(ctx)
		return err
	})
	return sn, err
}

// Do runs fn inside one PC/SC transaction on the PSAM, so that several
// cryptograms (an EXTERNAL AUTHENTICATE cryptogram and a write MAC, say)
// need one transaction and one SELECT. The session is valid only inside fn;
// fn must not call the Provider's own methods (they would wait for Do).
func (p *Provider) Do(ctx context.Context, fn func(ctx context.Context, s *Session) error) error {
	return p.run(ctx, "session", keys.KeyID{}, fn)
}

func (p *Provider) run(ctx context.Context, op string, id keys.KeyID, fn func(ctx context.Context, s *Session) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return &OpError{Op: op, Key: id, Err: err}
	}
	if p.tableErr != nil {
		return &OpError{Op: op, Key: id, Err: p.tableErr}
	}
	if err := p.lock(ctx); err != nil {
		return &OpError{Op: op, Key: id, Err: err}
	}
	defer p.unlock()
	s := &Session{p: p}
	err := p.card.Transaction(ctx, func(ctx context.Context) error {
		defer func() { s.done = true }()
		return fn(ctx, s)
	})
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Key: id, Err: err}
}

// Session is one transaction on the PSAM, handed to the function given to
// [Provider.Do]. The PSAM application is selected on first use.
type Session struct {
	p        *Provider
	selected bool
	done     bool
}

// Encrypt is [Provider.Encrypt] inside the session's transaction.
func (s *Session) Encrypt(ctx context.Context, req keys.Request, data []byte) ([]byte, error) {
	op, err := s.p.planEncrypt(req, data)
	if err != nil {
		return nil, err
	}
	return s.exec(ctx, op)
}

// MAC is [Provider.MAC] inside the session's transaction.
func (s *Session) MAC(ctx context.Context, req keys.Request, iv, data []byte) ([]byte, error) {
	op, err := s.p.planMAC(req, iv, data)
	if err != nil {
		return nil, err
	}
	return s.exec(ctx, op)
}

// SerialNumber is [Provider.SerialNumber] inside the session's transaction.
func (s *Session) SerialNumber(ctx context.Context) (string, error) {
	const op = "read serial number"
	if err := s.ensureSelected(ctx, op, keys.KeyID{}); err != nil {
		return "", err
	}
	cmd := ReadSerialCommand()
	resp, err := s.p.card.Transmit(ctx, cmd)
	if err != nil {
		return "", &OpError{Op: op, Step: cmd.Name, Err: err}
	}
	if !resp.SW.OK() {
		return "", &OpError{Op: op, Step: cmd.Name, Err: resp.SW}
	}
	if len(resp.Data) != SerialSize {
		return "", &OpError{Op: op, Step: cmd.Name, Err: fmt.Errorf("%w: %d bytes, want %d", ErrBadResponse, len(resp.Data), SerialSize)}
	}
	return strings.ToUpper(hex.EncodeToString(resp.Data)), nil
}

func (s *Session) ensureSelected(ctx context.Context, op string, id keys.KeyID) error {
	if s.done {
		return &OpError{Op: op, Key: id, Err: errors.New("session used after its transaction ended")}
	}
	if s.selected {
		return nil
	}
	cmd := SelectCommand()
	resp, err := s.p.card.Transmit(ctx, cmd)
	if err != nil {
		return &OpError{Op: op, Key: id, Step: cmd.Name, Err: err}
	}
	if !resp.SW.OK() {
		return &OpError{Op: op, Key: id, Step: cmd.Name, Err: fmt.Errorf("%w (AID %s): %w", ErrNotPSAM, AIDHex, resp.SW)}
	}
	s.selected = true
	return nil
}

// operation is a validated Encrypt or MAC, ready to send.
type operation struct {
	name         string
	id           keys.KeyID
	usage, index byte
	init, cipher apdu.Command
	want         int // response data length
}

func (p *Provider) resolve(op string, req keys.Request) (*operation, error) {
	id := req.ID()
	fail := func(err error) (*operation, error) { return nil, &OpError{Op: op, Key: id, Err: err} }
	if p.tableErr != nil {
		return fail(p.tableErr)
	}
	if err := req.Validate(); err != nil {
		return fail(err)
	}
	if len(req.Path) > MaxLevels {
		return fail(fmt.Errorf("%w: %d, the PSAM takes at most %d", ErrTooManyLevels, len(req.Path), MaxLevels))
	}
	usage, index, ok := p.table.Lookup(req.Key, req.Algorithm)
	if !ok {
		return fail(fmt.Errorf("not in the PSAM key table: %w", &keys.KeyNotFoundError{Key: req.Key, Algorithm: req.Algorithm}))
	}
	return &operation{name: op, id: id, usage: usage, index: index, init: InitCommand(usage, index, req.Path)}, nil
}

func (p *Provider) planEncrypt(req keys.Request, data []byte) (*operation, error) {
	op, err := p.resolve("encrypt", req)
	if err != nil {
		return nil, err
	}
	bs := req.Algorithm.BlockSize()
	switch {
	case len(data) == 0 || len(data)%bs != 0:
		return nil, &OpError{Op: op.name, Key: op.id, Err: fmt.Errorf("%w: %d bytes, %s block is %d", keys.ErrDataLength, len(data), req.Algorithm, bs)}
	case len(data) > MaxEncryptData:
		return nil, &OpError{Op: op.name, Key: op.id, Err: fmt.Errorf("%w: %d bytes to encrypt, at most %d", ErrTooLong, len(data), MaxEncryptData)}
	}
	op.cipher = CipherCommand(CipherEncrypt, append([]byte(nil), data...), len(data))
	op.want = len(data)
	return op, nil
}

func (p *Provider) planMAC(req keys.Request, iv, data []byte) (*operation, error) {
	op, err := p.resolve("MAC", req)
	if err != nil {
		return nil, err
	}
	bs := req.Algorithm.BlockSize()
	switch {
	case len(iv) > bs:
		return nil, &OpError{Op: op.name, Key: op.id, Err: fmt.Errorf("%w: %d bytes, %s block is %d", keys.ErrIVLength, len(iv), req.Algorithm, bs)}
	case bs+len(data) > MaxCipherData:
		return nil, &OpError{Op: op.name, Key: op.id, Err: fmt.Errorf("%w: %d bytes to MAC, at most %d", ErrTooLong, len(data), MaxCipherData-bs)}
	}
	in := make([]byte, bs+len(data))
	copy(in, iv) // right-padded with 00 to one block
	copy(in[bs:], data)
	op.cipher = CipherCommand(CipherMAC, in, keys.MACSize)
	op.want = keys.MACSize
	return op, nil
}

// exec sends SELECT (first use in the session), INIT FOR DESCRYPT and CIPHER
// DATA, and checks the answers.
func (s *Session) exec(ctx context.Context, op *operation) ([]byte, error) {
	defer clear(op.init.Data)
	defer clear(op.cipher.Data)
	if err := s.ensureSelected(ctx, op.name, op.id); err != nil {
		return nil, err
	}
	fail := func(step string, err error) ([]byte, error) {
		return nil, &OpError{Op: op.name, Key: op.id, Step: step, Err: err}
	}

	resp, err := s.p.card.Transmit(ctx, op.init)
	if err != nil {
		return fail(op.init.Name, err)
	}
	switch resp.SW {
	case apdu.SWOK:
	case apdu.SWRefDataNotFound:
		return fail(op.init.Name, fmt.Errorf("%w (PSAM usage %02X, index %02X): %w",
			&keys.KeyNotFoundError{Key: op.id.Name, Algorithm: op.id.Algorithm}, op.usage, op.index, resp.SW))
	default:
		return fail(op.init.Name, fmt.Errorf("usage %02X, index %02X, %d factor bytes: %w", op.usage, op.index, len(op.init.Data), resp.SW))
	}

	resp, err = s.p.card.Transmit(ctx, op.cipher)
	if err != nil {
		return fail(op.cipher.Name, err)
	}
	switch resp.SW {
	case apdu.SWOK:
	case apdu.SWConditionsNotSatisfied:
		return fail(op.cipher.Name, fmt.Errorf("%w: %w", ErrNoSession, resp.SW))
	default:
		return fail(op.cipher.Name, fmt.Errorf("%d data bytes: %w", len(op.cipher.Data), resp.SW))
	}
	if len(resp.Data) != op.want {
		clear(resp.Data)
		return fail(op.cipher.Name, fmt.Errorf("%w: %d bytes, want %d", ErrBadResponse, len(resp.Data), op.want))
	}
	return resp.Data, nil
}
