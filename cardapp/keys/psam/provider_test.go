package psam_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"ssstation/cardapp/keys"
	"ssstation/cardapp/keys/psam"
	simpsam "ssstation/internal/cardsim/psam"
	"ssstation/pcsc"
	"ssstation/pcsc/apdu"
)

var _ psam.Card = (*pcsc.Card)(nil)

// scripted is a PSAM that answers each INS with a fixed status word (9000
// by default, with the right amount of data), or fails the transmission.
type scripted struct {
	mu           sync.Mutex
	sw           map[byte]apdu.StatusWord
	data         map[byte][]byte
	fail         map[byte]error
	sent         []apdu.Command
	transactions int
}

func newScripted() *scripted {
	return &scripted{sw: map[byte]apdu.StatusWord{}, data: map[byte][]byte{}, fail: map[byte]error{}}
}

func (s *scripted) Transmit(ctx context.Context, cmd apdu.Command) (apdu.Response, error) {
	s.sent = append(s.sent, cmd)
	if err := s.fail[cmd.INS]; err != nil {
		return apdu.Response{}, err
	}
	if sw, ok := s.sw[cmd.INS]; ok {
		return apdu.Response{SW: sw}, nil
	}
	if d, ok := s.data[cmd.INS]; ok {
		return apdu.Response{Data: append([]byte(nil), d...), SW: apdu.SWOK}, nil
	}
	return apdu.Response{Data: make([]byte, cmd.Ne), SW: apdu.SWOK}, nil
}

func (s *scripted) Transaction(ctx context.Context, body func(context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transactions++
	return body(ctx)
}

var (
	factors = [][]byte{{0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8}, {0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8}}
	message = []byte{0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0}
)

// noData fails when err's text holds any of the test's data bytes in hex.
func noData(t *testing.T, err error) {
	t.Helper()
	s := strings.ToUpper(strings.ReplaceAll(err.Error(), " ", ""))
	for _, b := range append(factors, message) {
		for _, form := range []string{fmt.Sprintf("%X", b[:4]), fmt.Sprintf("% X", b[:4])} {
			if strings.Contains(s, strings.ReplaceAll(form, " ", "")) {
				t.Fatalf("error holds data bytes %s: %v", form, err)
			}
		}
	}
}

func TestProviderStatusWords(t *testing.T) {
	ctx := context.Background()
	req := keys.Request{Key: keys.KeyEFWrite, Algorithm: keys.TDES, Path: factors}
	for _, c := range []struct {
		name string
		ins  byte
		sw   apdu.StatusWord
		is   error
		step string
	}{
		{"no PSAM application", 0xA4, apdu.SWFileNotFound, psam.ErrNotPSAM, "SELECT PSAM"},
		{"key missing in the PSAM", 0x1A, apdu.SWRefDataNotFound, keys.ErrKeyNotFound, "INIT FOR DESCRYPT"},
		{"too many factor bytes", 0x1A, apdu.SWWrongLength, apdu.SWWrongLength, "INIT FOR DESCRYPT"},
		{"session lost", 0xFA, apdu.SWConditionsNotSatisfied, psam.ErrNoSession, "CIPHER DATA (MAC)"},
		{"other refusal", 0xFA, apdu.SWSecurityStatus, apdu.SWSecurityStatus, "CIPHER DATA (MAC)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			card := newScripted()
			card.sw[c.ins] = c.sw
			_, err := psam.New(card).MAC(ctx, req, nil, message)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.is) {
				t.Fatalf("%v: not %v", err, c.is)
			}
			var sw apdu.StatusWord
			if !errors.As(err, &sw) || sw != c.sw {
				t.Fatalf("%v: status word %v not in the chain", err, c.sw)
			}
			var oe *psam.OpError
			if !errors.As(err, &oe) || oe.Op != "MAC" || oe.Key != req.ID() || oe.Step != c.step {
				t.Fatalf("%v: OpError %+v", err, oe)
			}
			if !strings.Contains(err.Error(), "ef-write/3DES") {
				t.Fatalf("error does not name the key: %v", err)
			}
			noData(t, err)
			if card.transactions != 1 {
				t.Fatalf("%d transactions", card.transactions)
			}
		})
	}
}

func TestProviderBadResponses(t *testing.T) {
	ctx := context.Background()
	card := newScripted()
	card.data[0xFA] = []byte{1, 2, 3}
	_, err := psam.New(card).MAC(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.SM4}, nil, message)
	if !errors.Is(err, psam.ErrBadResponse) {
		t.Fatalf("3-byte MAC: %v", err)
	}
	card.data[0xB0] = []byte{0, 0, 1}
	if _, err := psam.New(card).SerialNumber(ctx); !errors.Is(err, psam.ErrBadResponse) {
		t.Fatalf("3-byte serial: %v", err)
	}
	card.data[0xB0] = []byte{0x12, 0x34, 0x56, 0x78, 0x90, 0x12}
	if sn, err := psam.New(card).SerialNumber(ctx); err != nil || sn != "123456789012" {
		t.Fatalf("serial %q %v", sn, err)
	}
	card.sw[0xB0] = apdu.SWFileNotFound
	if _, err := psam.New(card).SerialNumber(ctx); !errors.Is(err, apdu.SWFileNotFound) {
		t.Fatalf("serial 6A82: %v", err)
	}

	// A transport failure keeps its classification.
	card = newScripted()
	removed := &pcsc.Error{Op: "transmit CIPHER DATA", Reader: "PSAM reader", Kind: pcsc.KindCardRemoved}
	card.fail[0xFA] = removed
	_, err = psam.New(card).Encrypt(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: factors}, message)
	if !errors.Is(err, pcsc.ErrCardRemoved) {
		t.Fatalf("removed: %v", err)
	}
	noData(t, err)
}

// Requests the PSAM cannot serve fail before any APDU is sent.
func TestProviderRefusesLocally(t *testing.T) {
	ctx := context.Background()
	card := newScripted()
	p := psam.New(card)
	tdes := keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES}
	for _, c := range []struct {
		name string
		run  func() error
		is   error
	}{
		{"name not in the table", func() error {
			_, err := p.Encrypt(ctx, keys.Request{Key: "master", Algorithm: keys.TDES}, message)
			return err
		}, keys.ErrKeyNotFound},
		{"unknown algorithm", func() error {
			_, err := p.Encrypt(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: "AES"}, message)
			return err
		}, keys.ErrUnknownAlgorithm},
		{"short factor", func() error {
			_, err := p.MAC(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: [][]byte{{1, 2}}}, nil, message)
			return err
		}, keys.ErrFactorLength},
		{"four levels", func() error {
			_, err := p.MAC(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: append(factors, factors...)}, nil, message)
			return err
		}, psam.ErrTooManyLevels},
		{"partial block", func() error { _, err := p.Encrypt(ctx, tdes, message[:7]); return err }, keys.ErrDataLength},
		{"no data", func() error { _, err := p.Encrypt(ctx, tdes, nil); return err }, keys.ErrDataLength},
		{"too much to encrypt", func() error { _, err := p.Encrypt(ctx, tdes, make([]byte, 256)); return err }, psam.ErrTooLong},
		{"too much to MAC", func() error { _, err := p.MAC(ctx, tdes, nil, make([]byte, psam.MaxCipherData)); return err }, psam.ErrTooLong},
		{"long IV", func() error { _, err := p.MAC(ctx, tdes, make([]byte, 9), message); return err }, keys.ErrIVLength},
		{"cancelled", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := p.MAC(cctx, tdes, nil, message)
			return err
		}, context.Canceled},
	} {
		err := c.run()
		if !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
			continue
		}
		noData(t, err)
	}
	if len(card.sent) != 0 || card.transactions != 0 {
		t.Fatalf("sent %d APDUs in %d transactions", len(card.sent), card.transactions)
	}

	p.Close()
	if _, err := p.Encrypt(ctx, tdes, message); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if len(card.sent) != 0 {
		t.Fatal("a closed provider talked to the card")
	}

	// An invalid table fails every operation.
	bad := psam.New(card, psam.WithKeyTable(psam.Table{}))
	if _, err := bad.Encrypt(ctx, tdes, message); err == nil || !strings.Contains(err.Error(), "key table is empty") {
		t.Fatalf("empty table: %v", err)
	}
}

// A session used after Do returned fails instead of sending.
func TestSessionAfterDo(t *testing.T) {
	ctx := context.Background()
	card := newScripted()
	p := psam.New(card)
	var saved *psam.Session
	if err := p.Do(ctx, func(ctx context.Context, s *psam.Session) error { saved = s; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := saved.Encrypt(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES}, message); err == nil {
		t.Fatal("a stale session worked")
	}
	if len(card.sent) != 0 {
		t.Fatal("a stale session sent APDUs")
	}
}

// Operations from many goroutines are serialized and all correct.
func TestProviderConcurrent(t *testing.T) {
	ctx := context.Background()
	sim := simpsam.Builtin()
	p := psam.New(sim.Conn())
	soft := keys.NewTestKeystore()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				name := keys.KnownKeyNames()[(g+i)%len(keys.KnownKeyNames())]
				alg := []keys.Algorithm{keys.TDES, keys.SM4}[i%2]
				req := keys.Request{Key: name, Algorithm: alg, Path: [][]byte{{byte(g), byte(i), 3, 4, 5, 6, 7, 8}}}
				msg := bytes.Repeat([]byte{byte(g*8 + i)}, 5+i)
				want, _ := soft.MAC(ctx, req, nil, msg)
				got, err := p.MAC(ctx, req, nil, msg)
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("%s: %X %v, want %X", req, got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if sim.HasSession() {
		t.Fatal("session left behind")
	}
}

// A context that ends while waiting for another operation gives up.
func TestProviderWaitHonoursContext(t *testing.T) {
	card := newScripted()
	p := psam.New(card)
	inside, release := make(chan struct{}), make(chan struct{})
	go p.Do(context.Background(), func(ctx context.Context, s *psam.Session) error {
		close(inside)
		<-release
		return nil
	})
	<-inside
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Encrypt(ctx, keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES}, message)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v", err)
	}
}
