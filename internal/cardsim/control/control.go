// Package control is cardsim's control channel: a line protocol that pulls,
// inserts and disturbs the simulated cards while a test runs.
//
// One command per line, answered by one line starting "ok" or "error":
//
//	slots                    ok 35963=connected 35964=removed
//	remove [SLOT]            ok 35963 removed
//	insert [SLOT]            ok 35963 inserted
//	remove-after N [SLOT]    ok 35963 remove-after 2
//	remove-during N [SLOT]   ok 35963 remove-during 3   (the N-th APDU is carried out, its answer lost)
//	latency DURATION [SLOT]  ok 35963 latency 5ms
//	sw-once SW [SLOT]        ok 35963 sw-once 6A82
//	drop [SLOT]              ok 35963 drop armed
//	stats [SLOT]             ok 35963 apdus=12 connects=1 resets=3 dropped=0 state=connected
//	help                     ok slots remove insert ...
//
// SLOT is the vpcd port of the slot; without it the command applies to the
// first slot.
package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"ssstation/internal/cardsim/vpcd"
)

// Port is the port number of a slot's vpcd address, 0 if it has none.
func Port(s *vpcd.Slot) int {
	_, p, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// State names a slot's state: connected, connecting (inserted, waiting for
// vpcd) or removed.
func State(s *vpcd.Slot) string {
	switch {
	case s.Connected():
		return "connected"
	case s.Present():
		return "connecting"
	}
	return "removed"
}

const help = "slots | remove [SLOT] | insert [SLOT] | remove-after N [SLOT] | remove-during N [SLOT] | latency DURATION [SLOT] | sw-once SW [SLOT] | drop [SLOT] | stats [SLOT]"

// Exec runs one command line against the slots and returns the answer
// line (without newline): "ok ..." or "error ...".
func Exec(slots []*vpcd.Slot, line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "error empty command; try help"
	}
	cmd, args := strings.ToLower(f[0]), f[1:]

	// nargs is the number of arguments before the optional SLOT.
	nargs := map[string]int{
		"slots": 0, "help": 0, "remove": 0, "insert": 0, "drop": 0, "stats": 0,
		"remove-after": 1, "remove-during": 1, "latency": 1, "sw-once": 1,
	}
	n, known := nargs[cmd]
	if !known {
		return fmt.Sprintf("error unknown command %q; try help", f[0])
	}
	if cmd == "slots" || cmd == "help" {
		if len(args) > 0 {
			return fmt.Sprintf("error %s takes no argument", cmd)
		}
		if cmd == "help" {
			return "ok " + help
		}
		parts := make([]string, len(slots))
		for i, s := range slots {
			parts[i] = fmt.Sprintf("%d=%s", Port(s), State(s))
		}
		return strings.TrimSpace("ok " + strings.Join(parts, " "))
	}
	if len(args) < n {
		return fmt.Sprintf("error %s needs an argument; usage: %s", cmd, usage(cmd))
	}
	if len(args) > n+1 {
		return fmt.Sprintf("error too many arguments; usage: %s", usage(cmd))
	}
	slot, err := pick(slots, args[n:])
	if err != nil {
		return "error " + err.Error()
	}
	port := Port(slot)
	switch cmd {
	case "remove":
		slot.Remove()
		return fmt.Sprintf("ok %d removed", port)
	case "insert":
		slot.Insert()
		return fmt.Sprintf("ok %d inserted", port)
	case "drop":
		slot.Drop()
		return fmt.Sprintf("ok %d drop armed", port)
	case "stats":
		st := slot.Stats()
		extra := ""
		if r, ok := slot.Card().(interface{ Unmatched() int }); ok {
			extra = fmt.Sprintf(" unmatched=%d", r.Unmatched()) // a replay card (cardsim --replay)
		}
		return fmt.Sprintf("ok %d apdus=%d connects=%d resets=%d dropped=%d state=%s%s",
			port, st.APDUs, st.Connects, st.Resets, st.Dropped, State(slot), extra)
	case "remove-after":
		k, err := strconv.Atoi(args[0])
		if err != nil || k < 0 {
			return fmt.Sprintf("error remove-after %q: want a count >= 0", args[0])
		}
		slot.RemoveAfter(k)
		return fmt.Sprintf("ok %d remove-after %d", port, k)
	case "remove-during":
		k, err := strconv.Atoi(args[0])
		if err != nil || k < 1 {
			return fmt.Sprintf("error remove-during %q: want a count >= 1", args[0])
		}
		slot.RemoveDuring(k)
		return fmt.Sprintf("ok %d remove-during %d", port, k)
	case "latency":
		d, err := time.ParseDuration(args[0])
		if err != nil || d < 0 {
			return fmt.Sprintf("error latency %q: want a duration such as 5ms or 0", args[0])
		}
		slot.Latency(d)
		return fmt.Sprintf("ok %d latency %s", port, d)
	case "sw-once":
		s := strings.TrimPrefix(strings.TrimPrefix(args[0], "0x"), "0X")
		v, err := strconv.ParseUint(s, 16, 16)
		if err != nil || len(s) != 4 {
			return fmt.Sprintf("error sw-once %q: want 4 hex digits such as 6A82", args[0])
		}
		slot.StatusOnce(uint16(v))
		return fmt.Sprintf("ok %d sw-once %04X", port, v)
	}
	return "error internal: unhandled command " + cmd
}

func usage(cmd string) string {
	switch cmd {
	case "remove-after":
		return "remove-after N [SLOT]"
	case "remove-during":
		return "remove-during N [SLOT]"
	case "latency":
		return "latency DURATION [SLOT]"
	case "sw-once":
		return "sw-once SW [SLOT]"
	}
	return cmd + " [SLOT]"
}

func pick(slots []*vpcd.Slot, rest []string) (*vpcd.Slot, error) {
	if len(slots) == 0 {
		return nil, errors.New("no slots")
	}
	if len(rest) == 0 {
		return slots[0], nil
	}
	p, err := strconv.Atoi(rest[0])
	if err != nil {
		return nil, fmt.Errorf("slot %q: want a port number", rest[0])
	}
	for _, s := range slots {
		if Port(s) == p {
			return s, nil
		}
	}
	ports := make([]string, len(slots))
	for i, s := range slots {
		ports[i] = strconv.Itoa(Port(s))
	}
	return nil, fmt.Errorf("no slot on port %d (slots: %s)", p, strings.Join(ports, " "))
}

// Listen opens the control listener: a unix socket when addr contains "/"
// (a stale socket file is replaced), else TCP, which must be on a loopback
// address (127.0.0.1:35990, [::1]:35990, localhost:35990).
func Listen(addr string) (net.Listener, error) {
	if strings.Contains(addr, "/") {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", addr); err == nil {
				c.Close()
				return nil, fmt.Errorf("control socket %s is in use", addr)
			}
			_ = os.Remove(addr)
		}
		return net.Listen("unix", addr)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("control address %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("control address %q: only a loopback address is allowed", addr)
		}
	}
	return net.Listen("tcp", addr)
}

// Serve answers control connections on ln until ctx ends (it then closes
// ln and every open connection) or ln fails.
func Serve(ctx context.Context, ln net.Listener, slots []*vpcd.Slot) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	closeAll := func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return nil
		}
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			ServeConn(c, slots)
		}()
	}
}

// ServeConn answers the command lines of one connection until it closes.
func ServeConn(c net.Conn, slots []*vpcd.Slot) {
	sc := bufio.NewScanner(c)
	w := bufio.NewWriter(c)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line == "quit" || line == "exit" {
			fmt.Fprintln(w, "ok bye")
			w.Flush()
			return
		}
		fmt.Fprintln(w, Exec(slots, line))
		if w.Flush() != nil {
			return
		}
	}
}
