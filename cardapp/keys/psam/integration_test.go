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
	"ssstation/pcsc/pcsctest"
)

// traceLog collects trace events from the connection's worker.
type traceLog struct {
	mu     sync.Mutex
	events []pcsc.TraceEvent
}

func (l *traceLog) add(ev pcsc.TraceEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *traceLog) all() []pcsc.TraceEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]pcsc.TraceEvent(nil), l.events...)
}

// Through the real stack (libpcsclite, pcscd, vpcd, the virtual PSAM) the
// provider gives the software keystore's bytes, and the trace holds no data
// of INIT FOR DESCRYPT or CIPHER DATA.
func TestPSAMOverPCSC(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	sim := simpsam.Builtin()
	vc := pcsctest.StartCard(t, sim)
	var trace traceLog
	_, card := vc.Connect(t, trace.add)
	if !bytes.Equal(card.ATR(), simpsam.ATR()) {
		t.Fatalf("ATR %X", card.ATR())
	}
	if card.Protocol() != pcsc.ProtocolT1 {
		t.Fatalf("protocol %s", pcsc.ProtocolName(card.Protocol()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prov := psam.New(card)
	defer prov.Close()
	soft := keys.NewTestKeystore()

	// Everything the host sends or gets back that is not public.
	var secrets [][]byte
	type mac struct {
		req     keys.Request
		iv, msg []byte
	}
	macs := []mac{
		{keys.Request{Key: keys.KeyRKSSSE, Algorithm: keys.TDES, Path: factors}, []byte{0x9A, 0x8B, 0x7C, 0x6D}, message},
		{keys.Request{Key: keys.KeyEFWrite, Algorithm: keys.SM4, Path: factors[:1]}, bytes.Repeat([]byte{0x5E}, 16), append(message, message[:15]...)},
		{keys.Request{Key: keys.KeyPINReload, Algorithm: keys.SM4}, nil, bytes.Repeat([]byte{0xB7}, 300)}, // chained
	}
	for _, m := range macs {
		want, err := soft.MAC(ctx, m.req, m.iv, m.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := prov.MAC(ctx, m.req, m.iv, m.msg)
		if err != nil {
			t.Fatalf("%s: %v", m.req, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: PSAM MAC %X, keystore %X", m.req, got, want)
		}
		secrets = append(secrets, got)
	}
	for _, req := range []keys.Request{
		{Key: keys.KeyInternalAuth, Algorithm: keys.TDES, Path: factors},
		{Key: keys.KeyRKSSSE, Algorithm: keys.SM4, Path: factors},
		{Key: keys.KeyFinalize, Algorithm: keys.TDES},
	} {
		challenge := []byte{0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18}
		want, err := keys.ExternalAuthCryptogram(ctx, soft, req, challenge)
		if err != nil {
			t.Fatal(err)
		}
		got, err := keys.ExternalAuthCryptogram(ctx, prov, req, challenge)
		if err != nil {
			t.Fatalf("%s: %v", req, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: PSAM cryptogram %X, keystore %X", req, got, want)
		}
		secrets = append(secrets, got, challenge)
	}
	sn, err := prov.SerialNumber(ctx)
	if err != nil || sn != simpsam.DefaultSerial {
		t.Fatalf("serial %q %v", sn, err)
	}
	_, err = prov.MAC(ctx, keys.Request{Key: keys.KeyCardBlock, Algorithm: keys.TDES, Path: factors}, nil, message)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, factors...)
	secrets = append(secrets, message)

	events := trace.all()
	if len(events) == 0 {
		t.Fatal("no trace events")
	}
	seen := map[string]int{}
	for i, ev := range events {
		line := ev.String()
		if i < 4 {
			t.Logf("trace:\n%s", line)
		}
		for _, s := range secrets {
			for _, form := range []string{fmt.Sprintf("% X", s[:4]), fmt.Sprintf("%X", s[:4])} {
				if strings.Contains(line, form) {
					t.Fatalf("trace shows data bytes %s:\n%s", form, line)
				}
			}
		}
		switch {
		case strings.HasPrefix(ev.Name, "INIT FOR DESCRYPT"), strings.HasPrefix(ev.Name, "CIPHER DATA"), ev.Name == "SELECT PSAM", ev.Name == "GET RESPONSE" && ev.Sensitive:
			seen[strings.Fields(ev.Name)[0]]++
			if !ev.Sensitive || ev.RawCommand != nil || ev.RawResponse != nil {
				t.Fatalf("%s traced in the clear: %+v", ev.Name, ev)
			}
			if strings.Contains(ev.Name, "CIPHER") && !strings.Contains(ev.Command+ev.Response, "redacted") {
				t.Fatalf("%s: no redaction marker: %s", ev.Name, line)
			}
		}
	}
	if seen["INIT"] < 7 || seen["CIPHER"] < 7 || seen["SELECT"] < 8 {
		t.Fatalf("trace saw %v", seen)
	}
	if sim.HasSession() {
		t.Fatal("a session key outlived its operation")
	}
}

// A PSAM pulled in the middle of an operation gives a card-removed error,
// promptly.
func TestPSAMPulledMidOperation(t *testing.T) {
	pcsctest.EnsurePCSCD(t)
	vc := pcsctest.StartCard(t, simpsam.Builtin())
	_, card := vc.Connect(t, nil)
	prov := psam.New(card)
	req := keys.Request{Key: keys.KeyEFWrite, Algorithm: keys.TDES, Path: factors}

	vc.Slot.RemoveAfter(1) // SELECT is answered, INIT FOR DESCRYPT finds no card
	done := make(chan error, 1)
	go func() {
		_, err := prov.MAC(context.Background(), req, nil, message)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("MAC hangs after the PSAM was pulled")
	}
	if !errors.Is(err, pcsc.ErrCardRemoved) {
		t.Fatalf("%v (kind %v), want card removed", err, pcsc.KindOf(err))
	}
	var oe *psam.OpError
	if !errors.As(err, &oe) || oe.Step != "INIT FOR DESCRYPT" || oe.Key != req.ID() {
		t.Fatalf("%v: %+v", err, oe)
	}
	noData(t, err)
	t.Logf("pulled PSAM: %v", err)
	if !strings.Contains(err.Error(), vc.Reader) {
		t.Fatalf("error does not name the reader: %v", err)
	}

	// The provider stays usable: the next operation fails the same way
	// rather than hanging, until the owner reconnects.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := prov.Encrypt(ctx, req, message); err == nil {
		t.Fatal("an operation on a pulled PSAM succeeded")
	}
}
