package app

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/engarde-project/engarde/cmd/internal/control"
)

// The compact status view fits a terminal of statusWidth columns: the
// tunnel's state, then one line per link (client) or client address
// (server) with what tells a good link from a failing one. -wide prints
// every column instead.
const statusWidth = 80

// Widest cells of the compact view; longer ones are shortened in the
// middle, where names and addresses differ least ("eth0 (Cable n…rth)",
// "[2001:db8:…:5678]:59402" keeps the port).
const (
	linkCells = 24 // "name (label)"
	addrCells = 28 // a client address with its port
	// sessionCells is the header's width: session numbers count from 1.
	sessionCells = 7
)

func compactClient(w io.Writer, l *control.ClientList) error {
	var b strings.Builder
	compactHeader(&b, "engarde-client", l.Version, l.Backend, l.Uptime, l.Description)
	tunnelLines(&b, l.Tunnel)
	wg := l.WireGuard.Rates
	fmt.Fprintf(&b, "WireGuard at %s: %s pkt/s from it, %s to it\n\n", fit(l.ListenAddress, addrCells), si(wg.RxPackets), si(wg.TxPackets))
	tw := newTable()
	tw.row("LINK\tSTATE\tRTT\tLOSS\tLAST RX\tRX b/s\tTX b/s")
	for _, i := range l.Interfaces {
		name := i.Name
		if i.Label != "" {
			name += " (" + i.Label + ")"
		}
		rtt, loss := "-", "-"
		if p := i.Probe; p != nil {
			if p.RTTP50Ms != nil {
				rtt = ms(*p.RTTP50Ms) + "ms"
			}
			loss = pct(p.Loss)
		}
		if loss == "-" && i.Quality != nil {
			loss = pct(i.Quality.LossRate)
		}
		rx, tx := "-", "-"
		if i.Stats != nil {
			rx, tx = si(i.Stats.Rates.RxBits), si(i.Stats.Rates.TxBits)
		}
		lastRx := "-"
		if i.Stats != nil {
			lastRx = ago(i.Last)
		}
		tw.row("%s\t%s\t%s\t%s\t%s\t%s\t%s", fit(name, linkCells), state(i.State, i.Status), rtt, loss, lastRx, rx, tx)
	}
	if len(l.Interfaces) == 0 {
		tw.row("(no interface)")
	}
	if err := tw.write(&b); err != nil {
		return err
	}
	writeEvents(&b, l.Events, compactEvents, time.Now())
	_, err := io.WriteString(w, b.String())
	return err
}

func compactServer(w io.Writer, l *control.ServerList) error {
	var b strings.Builder
	compactHeader(&b, "engarde-server", l.Version, l.Backend, l.Uptime, l.Description)
	tunnelLines(&b, l.Tunnel)
	fmt.Fprintf(&b, "listening on %s, WireGuard at %s\n\n", fit(l.ListenAddress, addrCells), fit(l.DstAddress, addrCells))
	addrs := l.Sockets
	if len(l.Sessions) > 0 {
		addrs = nil
		for _, ss := range l.Sessions {
			addrs = append(addrs, ss.Addresses...)
		}
	}
	if len(addrs) == 0 {
		b.WriteString("no client session yet\n")
		writeEvents(&b, l.Events, compactEvents, time.Now())
		_, err := io.WriteString(w, b.String())
		return err
	}
	tw := newTable()
	tw.row("SESSION\tCLIENT ADDRESS\tSTATE\tLOSS\tLAST RX\tRX b/s\tTX b/s")
	for _, s := range addrs {
		st := state(s.State, "")
		switch {
		case !s.Live:
			st = "silent" // past the client timeout: it gets no replies
		case st == "-" && s.Stalled:
			st = "stalled" // an older daemon's answer
		case st == "-":
			st = "active"
		}
		r := s.Stats.Rates
		tw.row("%s\t%s\t%s\t%s\t%s\t%s\t%s", fit(strconv.FormatUint(s.Session, 10), sessionCells), fit(s.Address, addrCells), st, pct(s.Quality.LossRate), ago(s.Last), si(r.RxBits), si(r.TxBits))
	}
	if err := tw.write(&b); err != nil {
		return err
	}
	writeEvents(&b, l.Events, compactEvents, time.Now())
	_, err := io.WriteString(w, b.String())
	return err
}

// How many of the last changes of state the views show, newest last.
const (
	compactEvents = 3
	wideEvents    = 20
)

// writeEvents writes the last n of events (oldest first, as the API
// lists them), a line each cut at statusWidth: when, what, from, to, why.
func writeEvents(b *strings.Builder, events []control.Event, n int, now time.Time) {
	if len(events) == 0 {
		return
	}
	events = events[max(0, len(events)-n):]
	b.WriteString("\nlast changes:\n")
	for _, e := range events {
		at := e.At.Local()
		when := at.Format("15:04:05")
		if now.Sub(at) > 20*time.Hour {
			when = at.Format("2006-01-02")
		}
		what := e.Link
		if what == "" {
			what = "tunnel"
		}
		line := fmt.Sprintf("  %s  %s %s -> %s", when, what, e.From, e.To)
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		b.WriteString(clip(line, statusWidth) + "\n")
	}
}

// clip cuts s to n characters, ending in an ellipsis when it was longer.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// compactHeader writes the program's line and its description, wrapped.
func compactHeader(b *strings.Builder, prog, version, backend string, uptime float64, description string) {
	fmt.Fprintf(b, "%s %s, %s backend, up %s\n", prog, version, backend, (time.Duration(uptime) * time.Second).String())
	if description != "" {
		wrap(b, "", description)
	}
}

// tunnelLines writes the tunnel's state, since when, and why, wrapped.
func tunnelLines(b *strings.Builder, t control.Tunnel) {
	if t.State == "" {
		return // an engarde from before tunnel states
	}
	line := "tunnel " + t.State
	if t.State != "up" {
		line = "tunnel " + strings.ToUpper(t.State)
	}
	if !t.Since.IsZero() {
		line += " since " + t.Since.Local().Format("2006-01-02 15:04:05")
	}
	if t.Reason != "" {
		line += ": " + t.Reason
	}
	if t.Probes != "" {
		line += " (probes " + t.Probes + ")"
	}
	wrap(b, "", line)
}

// state is the link's state, or the original's status word when an older
// daemon answers without one.
func state(s, status string) string {
	switch {
	case s != "":
		return s
	case status != "":
		return status
	}
	return "-"
}

// ago formats a number of seconds in the past in at most four cells: 0s,
// 59s, 12m, 5h, 3d; "never" for none.
func ago(sec *int64) string {
	if sec == nil {
		return "never"
	}
	s := *sec
	switch {
	case s < 60:
		return strconv.FormatInt(max(s, 0), 10) + "s"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + "m"
	case s < 86400:
		return strconv.FormatInt(s/3600, 10) + "h"
	}
	return strconv.FormatInt(s/86400, 10) + "d"
}

// fit shortens s to at most n characters by replacing its middle with an
// ellipsis; the ends, where names and ports differ, stay.
func fit(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 3 {
		return s
	}
	tail := (n - 1) / 2
	head := n - 1 - tail
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// width is the number of characters of s, as a terminal shows them (the
// view writes no double-width characters of its own).
func width(s string) int { return utf8.RuneCountInString(s) }
