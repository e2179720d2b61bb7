package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/engarde-project/engarde/cmd/internal/control"
	"github.com/engarde-project/engarde/config"
)

// Status is the status subcommand: it asks the running daemon for its
// state, through its control socket when there is one and otherwise its
// web manager (address and credentials from the configuration), and
// prints it in 80 columns, every column with -wide, or as the API's JSON
// with -json. Its flags are those Help lists.
func Status(w io.Writer, prog string, role config.Role, args []string) error {
	cmd := Help(role).Command(cmdStatus)
	fl := flag.NewFlagSet(prog+" "+cmdStatus, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	set := map[string]*bool{}
	for _, f := range cmd.Flags {
		set[f.Name] = fl.Bool(f.Name, false, f.Summary)
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(w, "usage: %s %s\n%s\n", prog, cmd.Line(), cmd.Summary)
			for _, f := range cmd.Flags {
				fmt.Fprintf(w, "  -%s  %s\n", f.Name, f.Summary)
			}
			return nil
		}
		return usageError{fmt.Sprintf("%v (usage: %s %s)", err, prog, cmd.Line())}
	}
	if fl.NArg() > 1 {
		return usageError{fmt.Sprintf("too many arguments (usage: %s %s)", prog, cmd.Line())}
	}
	asJSON, wide := *set["json"], *set["wide"]
	path := DefaultConfig
	if fl.NArg() == 1 {
		path = fl.Arg(0)
	}
	cfg, err := config.Load(path, role)
	if err != nil {
		return err
	}
	body, err := fetch(cfg)
	if err != nil {
		return err
	}
	if asJSON {
		_, err := w.Write(body)
		return err
	}
	if role == config.RoleClient {
		var l control.ClientList
		if err := json.Unmarshal(body, &l); err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
		if wide {
			return printClient(w, &l)
		}
		return compactClient(w, &l)
	}
	var l control.ServerList
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if wide {
		return printServer(w, &l)
	}
	return compactServer(w, &l)
}

// fetch asks the daemon cfg configures for its state: through its control
// socket when the socket is there, else through its web manager.
func fetch(cfg *config.Config) ([]byte, error) {
	_, _, web := sections(cfg)
	sock, _ := socketPath(cfg)
	var sockErr error
	if sock != "" {
		if st, err := os.Stat(sock); err == nil && st.Mode().Type() == fs.ModeSocket {
			body, err := fetchSocket(sock, cfg.Role)
			if err == nil || web.ListenAddr == "" {
				return body, err
			}
			sockErr = err // try the web manager
		}
	}
	if web.ListenAddr == "" {
		where := "it is off (controlSocket: off)"
		if sock != "" {
			where = "there is none at " + sock
		}
		return nil, fmt.Errorf("is engarde-%s running? the status command asks the daemon through its control socket, but %s, and %s.webManager.listenAddr is not set in %s", cfg.Role, where, cfg.Role, cfg.File)
	}
	body, err := fetchList(web, cfg.File, cfg.Role)
	if err != nil && sockErr != nil {
		return nil, fmt.Errorf("%w; and through the web manager: %w", sockErr, err)
	}
	return body, err
}

// fetchSocket asks the daemon through its control socket at path.
func fetchSocket(path string, role config.Role) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	// The host is a formality on a unix socket.
	resp, err := c.Get("http://localhost/api/v1/get-list")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("control socket %s: %w (run as the daemon's user or group, engarde under systemd, or root)", path, err)
		}
		return nil, fmt.Errorf("is engarde-%s running? control socket %s: %w", role, path, err)
	}
	return readList(resp, "control socket "+path, "", role)
}

// webURL returns where to reach a web manager listening on listenAddr,
// over HTTPS when tls: a wildcard address is reached on loopback.
func webURL(listenAddr string, tls bool) (string, error) {
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return "", err
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + "/api/v1/get-list", nil
}

// statusClient returns the client that asks web. Over HTTPS it trusts
// exactly the certificate in web.CertFile, whatever its names and issuer:
// the command reads the daemon's own configuration, so that certificate is
// the one the daemon shows.
func statusClient(web config.WebManager) (*http.Client, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	if web.CertFile == "" {
		return c, nil
	}
	pemData, err := os.ReadFile(web.CertFile)
	if err != nil {
		return nil, fmt.Errorf("reading webManager.certFile: %w", err)
	}
	blk, _ := pem.Decode(pemData)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("webManager.certFile %s: no PEM certificate", web.CertFile)
	}
	want := blk.Bytes
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{
		// The usual checks are replaced by VerifyConnection's, which
		// compares the whole certificate.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return fmt.Errorf("the web manager's certificate is not the one in %s", web.CertFile)
			}
			return nil
		},
	}}
	return c, nil
}

func fetchList(web config.WebManager, path string, role config.Role) ([]byte, error) {
	if web.ListenAddr == "" {
		return nil, fmt.Errorf("%s: %s.webManager.listenAddr is not set: the status command asks the running daemon's web manager, so enable it (127.0.0.1:9001, say) and reload", path, role)
	}
	url, err := webURL(web.ListenAddr, web.CertFile != "")
	if err != nil {
		return nil, fmt.Errorf("%s: %s.webManager.listenAddr: %w", path, role, err)
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if web.Username != "" && web.Password != "" {
		req.SetBasicAuth(web.Username, web.Password)
	}
	c, err := statusClient(web)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is engarde-%s running? %w", role, err)
	}
	return readList(resp, url, path, role)
}

// readList reads the API's answer from where (the web manager's URL or
// the control socket), checks it is role's, and returns its body. path
// names the configuration file the credentials came from.
func readList(resp *http.Response, where, path string, role config.Role) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", where, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s: the web manager refused the credentials in %s (webManager.username and password)", where, path)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s: %s: %s", where, resp.Status, strings.TrimSpace(string(body)))
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, fmt.Errorf("%s: not engarde's API: %w", where, err)
	}
	if head.Type != role.String() {
		return nil, fmt.Errorf("%s answers as engarde-%s, not engarde-%s: check webManager.listenAddr and controlSocket in both sections", where, head.Type, role)
	}
	return body, nil
}

func printClient(w io.Writer, l *control.ClientList) error {
	header(w, "engarde-client", l.Version, l.Backend, l.Uptime, l.Description)
	tunnelHeader(w, l.Tunnel)
	wg := l.WireGuard.Rates
	fmt.Fprintf(w, "WireGuard side %s: from WireGuard %s, to WireGuard %s", l.ListenAddress, perSecond(wg.RxPackets, "pkt/s"), perSecond(wg.TxPackets, "pkt/s"))
	if l.NoLink > 0 {
		fmt.Fprintf(w, "; %d dropped with no link up", l.NoLink)
	}
	if l.Foreign > 0 {
		fmt.Fprintf(w, "; %d from another address than WireGuard's dropped", l.Foreign)
	}
	fmt.Fprint(w, "\n\n")
	tw := newTable()
	tw.row("INTERFACE\tLABEL\tSTATE\tSOURCE\tDESTINATION\tLAST RX\tRX PKT/S\tRX BIT/S\tTX PKT/S\tTX BIT/S\tDROPS\tRTT P50/P99\tPROBE LOSS\tFIRST\tLOSS\tLATE P50/P99\tNOTE")
	for _, i := range l.Interfaces {
		st := state(i.State, i.Status)
		if i.State == "" && i.Stalled {
			st = "stalled" // an older daemon's answer
		}
		note := i.Reason
		if note == "excluded" {
			note = ""
		}
		tw.row("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", i.Name, dash(i.Label), st, dash(i.SenderAddress), dash(i.DstAddress), last(i.Last, i.Stats != nil), statsCols(i.Stats), probeCols(i.Probe), qualityCols(i.Quality), note)
	}
	if err := tw.write(w); err != nil {
		return err
	}
	printNames(w, l.Interfaces)
	var b strings.Builder
	writeEvents(&b, l.Events, wideEvents, time.Now())
	_, err := io.WriteString(w, b.String())
	return err
}

func printServer(w io.Writer, l *control.ServerList) error {
	header(w, "engarde-server", l.Version, l.Backend, l.Uptime, l.Description)
	tunnelHeader(w, l.Tunnel)
	// What WireGuard gets and sends: on the handshake socket and on every
	// session's own.
	up := l.Upstream.Rates
	for _, ss := range l.Sessions {
		up.TxPackets += ss.Stats.Rates.TxPackets
		up.RxPackets += ss.Stats.Rates.RxPackets
	}
	fmt.Fprintf(w, "listening on %s, WireGuard at %s, client timeout %s\nto WireGuard %s, replies %s", l.ListenAddress, l.DstAddress,
		time.Duration(l.ClientTimeout*float64(time.Second)), perSecond(up.TxPackets, "pkt/s"), perSecond(up.RxPackets, "pkt/s"))
	if l.NoClient > 0 {
		fmt.Fprintf(w, "; %d replies dropped with no client address live", l.NoClient)
	}
	fmt.Fprintf(w, "\nhandshakes: %s to WireGuard, %s held back, %s joined after the answer",
		count(l.Initiations, "initiation", "initiations"), count(l.InitCopies, "copy", "copies"), count(l.Joins, "address", "addresses"))
	var dropped []string
	for _, d := range []struct {
		n    uint64
		what string
	}{
		{l.NotWireGuard, "not WireGuard's"},
		{l.NotMember, "from addresses in no session"},
		{l.Foreign, "with an index not of their session"},
		{l.Unrouted, "answers to no initiation seen"},
		{l.PendingEvicted, "initiations forgotten unanswered"},
	} {
		if d.n > 0 {
			dropped = append(dropped, fmt.Sprintf("%d %s", d.n, d.what))
		}
	}
	if len(dropped) > 0 {
		fmt.Fprintf(w, "\ndropped: %s", strings.Join(dropped, ", "))
	}
	fmt.Fprint(w, "\n\n")
	if len(l.Sessions) == 0 && len(l.Sockets) == 0 {
		fmt.Fprintln(w, "no client session yet")
		return nil
	}
	if len(l.Sessions) > 0 {
		tw := newTable()
		tw.row("SESSION\tENDPOINT\tADDRESSES\tINDEXES\tTO WG PKT/S\tREPLIES PKT/S\tSINCE\tNOTE")
		for _, ss := range l.Sessions {
			live := 0
			for _, a := range ss.Addresses {
				if a.Live {
					live++
				}
			}
			note := ""
			if ss.AnyUDP {
				note = "forwardAnyUDP"
			}
			r := ss.Stats.Rates
			tw.row("%d\t%s\t%d live of %d\t%d\t%s\t%s\t%s\t%s", ss.ID, dash(ss.Endpoint), live, len(ss.Addresses), len(ss.Indexes),
				si(r.TxPackets), si(r.RxPackets), ss.Since.Local().Format("15:04:05"), note)
		}
		if err := tw.write(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	tw := newTable()
	tw.row("SESSION\tSLOT\tCLIENT ADDRESS\tSTATE\tREPLIES FROM\tLAST RX\tRX PKT/S\tRX BIT/S\tTX PKT/S\tTX BIT/S\tDROPS\tFIRST\tLOSS\tLATE P50/P99\tSINCE\tNOTE")
	// Every session's addresses, silent ones too; an older engarde's
	// answer has only Sockets.
	addrs := l.Sockets
	if len(l.Sessions) > 0 {
		addrs = nil
		for _, ss := range l.Sessions {
			addrs = append(addrs, ss.Addresses...)
		}
	}
	for _, s := range addrs {
		note := ""
		if !s.Live {
			note = "silent: gets no replies"
		}
		state := s.State
		switch {
		case state == "" && s.Stalled:
			state = "stalled" // an older daemon's answer
		case state == "":
			state = "-"
		}
		st, q := s.Stats, s.Quality
		tw.row("%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", s.Session, s.Slot, s.Address, state, s.LocalAddress, last(s.Last, true), statsCols(&st), qualityCols(&q), s.Since.Local().Format("15:04:05"), note)
	}
	if err := tw.write(w); err != nil {
		return err
	}
	var b strings.Builder
	writeEvents(&b, l.Events, wideEvents, time.Now())
	_, err := io.WriteString(w, b.String())
	return err
}

// table lays out rows of tab-separated cells in columns, with no blanks
// at the ends of lines.
type table struct {
	b  bytes.Buffer
	tw *tabwriter.Writer
}

func newTable() *table {
	t := &table{}
	t.tw = tabwriter.NewWriter(&t.b, 0, 4, 2, ' ', 0)
	return t
}

func (t *table) row(format string, args ...any) { fmt.Fprintf(t.tw, format+"\n", args...) }

func (t *table) write(w io.Writer) error {
	t.tw.Flush()
	var out strings.Builder
	for _, l := range strings.SplitAfter(t.b.String(), "\n") {
		if l == "" {
			continue
		}
		out.WriteString(strings.TrimRight(l, " \n") + "\n")
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func header(w io.Writer, prog, version, backend string, uptime float64, description string) {
	fmt.Fprintf(w, "%s %s, %s backend, up %s\n", prog, version, backend, (time.Duration(uptime) * time.Second).String())
	if description != "" {
		fmt.Fprintln(w, description)
	}
}

// statsCols formats the rate and drop columns (tab-separated).
func statsCols(s *control.SocketStats) string {
	if s == nil {
		return "-\t-\t-\t-\t-"
	}
	r := s.Rates
	return strings.Join([]string{si(r.RxPackets), si(r.RxBits), si(r.TxPackets), si(r.TxBits), strconv.FormatUint(s.Drops.Total, 10)}, "\t")
}

// qualityCols formats the first share, loss and lateness columns
// (tab-separated), with "-" for what was not measured.
// tunnelHeader writes the tunnel's line, as the compact view does.
func tunnelHeader(w io.Writer, t control.Tunnel) {
	var b strings.Builder
	tunnelLines(&b, t)
	io.WriteString(w, b.String())
}

// probeCols is a link's probe round trip (p50/p99) and probe loss.
func probeCols(p *control.Probe) string {
	if p == nil {
		return "-\t-"
	}
	return msPair(p.RTTP50Ms, p.RTTP99Ms) + "\t" + pct(p.Loss)
}

// msPair is a p50/p99 pair in milliseconds, "-" unless both were measured.
func msPair(p50, p99 *float64) string {
	if p50 == nil || p99 == nil {
		return "-"
	}
	return ms(*p50) + "/" + ms(*p99) + "ms"
}

func qualityCols(q *control.Quality) string {
	if q == nil {
		return "-\t-\t-"
	}
	return pct(q.FirstShare) + "\t" + pct(q.LossRate) + "\t" + msPair(q.LateP50Ms, q.LateP99Ms)
}

// pct formats a share from 0 to 1 as a percentage: 62%, 0.4%, 0%.
func pct(v *float64) string {
	switch {
	case v == nil:
		return "-"
	case *v == 0:
		return "0%"
	case *v < 0.1:
		return strconv.FormatFloat(*v*100, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(*v*100, 'f', 0, 64) + "%"
}

// ms formats milliseconds with two significant digits or more: 0.35, 2.1, 48.
func ms(v float64) string {
	switch {
	case v < 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func last(l *int64, has bool) string {
	switch {
	case !has:
		return "-"
	case l == nil:
		return "never"
	}
	return (time.Duration(*l) * time.Second).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// si formats a rate with an SI prefix: 950, 12.3k, 1.2M.
func si(v float64) string {
	const prefixes = "kMGT"
	p := -1
	for v >= 1000 && p < len(prefixes)-1 {
		v /= 1000
		p++
	}
	if p < 0 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	prec := 1
	if v >= 100 {
		prec = 0
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + string(prefixes[p])
}

// count writes n with the noun's singular or plural.
func count(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatUint(n, 10) + " " + many
}

func perSecond(v float64, unit string) string { return si(v) + " " + unit }

// printNames prints one line per destination name: its answer, the
// answer's age and the last lookup error.
func printNames(w io.Writer, ifs []control.Interface) {
	seen := map[string]bool{}
	for _, i := range ifs {
		r := i.Resolution
		if r == nil || seen[r.Name] {
			continue
		}
		seen[r.Name] = true
		line := "unresolved"
		if len(r.Addrs) > 0 {
			line = strings.Join(r.Addrs, ", ") + ", resolved " + last(r.Age, true) + " ago"
		}
		if r.Error != "" {
			line += "; last lookup failed " + last(r.ErrorAge, true) + " ago: " + r.Error
		}
		fmt.Fprintf(w, "\nname %s: %s", r.Name, line)
	}
	if len(seen) > 0 {
		fmt.Fprintln(w)
	}
}
