package main

import (
	"context"
	"fmt"
	"time"

	"ssstation/pcsc"
)

func init() {
	register("watch", "print reader and card events until interrupted", cmdWatch)
}

type eventJSON struct {
	Time   string `json:"time"`
	Event  string `json:"event"`
	Reader string `json:"reader,omitempty"`
	ATR    string `json:"atr,omitempty"`
	Error  string `json:"error,omitempty"`
}

func cmdWatch(ctx context.Context, env *cli, args []string) error {
	fs := newFlags("watch")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	retry := fs.Duration("retry", 500*time.Millisecond, "pause between attempts to reach a lost smart card service")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	events := make(chan pcsc.Event, 16)
	m := &pcsc.Monitor{Retry: *retry}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, events); close(events) }()
	if !*asJSON {
		fmt.Fprintln(env.stdout, "Watching readers; press Ctrl-C to stop.")
	}
	for ev := range events {
		if ctx.Err() != nil {
			// Interrupted: the monitor is letting go of its PC/SC context,
			// and the removals it reports on the way out are not events of
			// the readers. Drain without printing.
			continue
		}
		j := eventJSON{Time: ev.Time.Format(time.RFC3339Nano), Event: ev.Type.String(), Reader: ev.Reader, ATR: hexOrEmpty(ev.ATR)}
		if ev.Err != nil {
			j.Error = ev.Err.Error()
		}
		if *asJSON {
			if err := writeJSONLine(env, j); err != nil {
				return err
			}
			continue
		}
		line := fmt.Sprintf("%s  %-16s %s", ev.Time.Format("15:04:05.000"), j.Event, termSafe(j.Reader))
		switch ev.Type {
		case pcsc.CardInserted:
			line += "  ATR " + j.ATR
		case pcsc.ServiceLost:
			line += "smart card service lost (" + termSafe(j.Error) + "); waiting for it to come back"
		case pcsc.ServiceRestored:
			line += "smart card service is back"
		}
		fmt.Fprintln(env.stdout, line)
	}
	return <-done
}
