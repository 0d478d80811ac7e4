package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	bolt "go.etcd.io/bbolt"

	"ssstation/cardapp/keys"
	psamhost "ssstation/cardapp/keys/psam"
	"ssstation/pcsc"
	"ssstation/station/api"
	"ssstation/station/audit"
	"ssstation/station/config"
	"ssstation/station/daemon"
	"ssstation/station/journal"
	"ssstation/station/secret"
	"ssstation/station/service"
	"ssstation/station/store"
)

// serve runs the service until ctx ends (SIGTERM, SIGINT): then it stops
// taking operations, finishes the one in progress (bounded by the grace
// period) and closes the store.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	start := time.Now()
	s, err := loadSettings(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(s.logFormat, s.logLevel, stderr)
	if err != nil {
		return err
	}
	set, err := s.cfg.Profiles()
	if err != nil {
		return err
	}
	var kp keys.Provider
	var psam func(card *pcsc.Card) keys.Provider
	if s.cfg.Keys.Provider == config.ProviderPSAM {
		var opts []psamhost.Option
		if path := s.cfg.Keys.PSAMKeyTable; path != "" {
			table, err := psamhost.LoadKeyTable(path)
			if err != nil {
				return err
			}
			opts = append(opts, psamhost.WithKeyTable(table))
		}
		psam = func(card *pcsc.Card) keys.Provider { return psamhost.New(card, opts...) }
	} else if kp, err = s.cfg.HostKeys(); err != nil {
		return err
	}

	// The store: one bbolt file for the journal, operations, idempotency
	// records and the audit trail. A file damaged by a crash is refused
	// here, before bbolt could panic on it.
	if err := journal.CheckFile(s.store, journal.Options{}); err != nil {
		return fmt.Errorf("store %s: %w", s.store, err)
	}
	st, err := store.Open(s.store, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	auditLog, err := audit.Open(st.DB())
	if err != nil {
		return err
	}
	jr, err := journal.OpenDB(st.DB(), journal.Options{})
	if err != nil {
		return err
	}
	defer jr.Close()

	key, err := secret.Load(filepath.Dir(s.store))
	if err != nil {
		return err
	}
	d, err := daemon.New(daemon.Options{Secret: key, Profiles: set, Keys: kp, PSAM: psam, PSAMReader: s.cfg.Keys.PSAMReader,
		Store: st, Audit: auditLog, Journal: jr, Readers: s.cfg.Daemon.Readers, QueueSize: s.queue,
		TerminalNo: s.cfg.TerminalNo, DeviceNo: s.cfg.DeviceNo, Logger: log, Version: version,
		Diagnostics: daemon.DiagnosticsInfo{Config: s.cfg, KeysSource: s.cfg.Keys.Provider}, TestKeys: s.cfg.TestKeys(),
		OperationRetention: retentionDays(s.cfg.JournalRetentionDays)})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := d.RegisterMetrics(reg); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.listen, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	tokens := make([]api.TokenRecord, 0, len(s.cfg.Daemon.Tokens))
	for _, t := range s.cfg.Daemon.Tokens {
		tokens = append(tokens, api.TokenRecord{Name: t.Name, Role: service.Role(t.Role), Hash: t.Hash, Origins: t.Origins})
	}
	h, err := api.New(api.Options{Station: d, DB: st.DB(), Tokens: tokens, Port: port, Logger: log, Version: version,
		Registry: reg, Gatherer: reg, Audit: auditQuery(auditLog), AuditVerify: auditVerify(auditLog, st.DB()), TestKeys: s.cfg.TestKeys()})
	if err != nil {
		ln.Close()
		return err
	}
	srv := api.Server(ln.Addr().String(), h)

	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = d.Run(runCtx) }()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()

	go func() {
		select {
		case <-d.Started():
			ev := log.Info().Str("event", "ready").Str("listen", ln.Addr().String()).Str("store", s.store).
				Dur("startup", time.Since(start)).Str("version", version)
			if s.cfg.TestKeys() {
				ev = ev.Bool("test_keys", true)
			}
			ev.Msg("stationd ready")
		case <-ctx.Done():
		}
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-srvDone:
	}
	log.Info().Str("event", "shutdown").Dur("grace", s.grace).Msg("stopping: finishing the operation in progress")
	graceCtx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	if err := d.Shutdown(graceCtx); err != nil {
		log.Warn().Str("event", "shutdown").Msg("grace period over with an operation still running")
	}
	httpCtx, cancelHTTP := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelHTTP()
	_ = srv.Shutdown(httpCtx)
	stopRun()
	// The reader monitor ends with SCardCancel; a cancel that lands just
	// before its wait starts is lost until that wait times out, so the
	// exit does not wait for it beyond a bound (no card work runs now).
	select {
	case <-runDone:
	case <-time.After(3 * time.Second):
		log.Warn().Str("event", "shutdown").Msg("the reader monitor did not stop within 3 s; exiting without it")
	}
	log.Info().Str("event", "stopped").Msg("stationd stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// retentionDays is the stored operations' retention: the journal's
// setting (journal_retention_days: 0 the default, -1 for ever), so that
// an operation and its journal entry go at the same time.
func retentionDays(days int) time.Duration {
	switch {
	case days == 0:
		return 0
	case days < 0:
		return -1
	}
	return time.Duration(days) * 24 * time.Hour
}

// auditVerify adapts the chain check to the API's GET /v1/audit/verify.
// Entries committed after the answer are flushed first, so the check sees
// every touch the station has answered.
func auditVerify(l *audit.Log, db *bolt.DB) api.AuditVerify {
	return func(ctx context.Context) (*api.AuditCheck, error) {
		l.Flush()
		n, err := audit.Verify(db)
		c := &api.AuditCheck{OK: err == nil, Entries: n}
		var be *audit.BreakError
		switch {
		case errors.As(err, &be):
			c.Break = &api.AuditBreak{Seq: be.Seq, Reason: be.Reason}
		case err != nil:
			return nil, err
		}
		if c.OutcomeUnknown, err = audit.Unfinished(db); err != nil {
			return nil, err
		}
		return c, nil
	}
}

// auditQuery adapts the audit trail to the API's GET /v1/audit.
func auditQuery(l *audit.Log) api.AuditQuery {
	return func(ctx context.Context, f api.AuditFilter) ([]json.RawMessage, error) {
		recs, err := l.Records(audit.Query{CardID: f.Card, From: f.From, To: f.To, Limit: f.Limit})
		if err != nil {
			return nil, err
		}
		out := make([]json.RawMessage, 0, len(recs))
		for _, r := range recs {
			raw, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			out = append(out, raw)
		}
		return out, nil
	}
}
