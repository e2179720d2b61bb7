package control

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/engarde-project/engarde/engine"
)

// The JSON API. The fields the original engarde returned keep their names
// and meanings; everything else is an addition that old tools ignore.

// Head starts both roles' answers to GET /api/v1/get-list.
type Head struct {
	Type          string `json:"type"` // "client" or "server"
	Version       string `json:"version"`
	Description   string `json:"description"`
	ListenAddress string `json:"listenAddress"`
}

// Run describes the running program: an addition to both answers.
type Run struct {
	Backend string    `json:"backend"`
	Started time.Time `json:"started"`
	Uptime  float64   `json:"uptime"` // seconds
}

// ClientList is the client's answer to GET /api/v1/get-list.
type ClientList struct {
	Head
	Interfaces []Interface `json:"interfaces"`

	// Additions.
	Run
	WireGuard SocketStats `json:"wireguard"` // the socket facing WireGuard
	// NoLink counts datagrams from WireGuard dropped because no link was
	// up.
	NoLink uint64 `json:"noLink"`
	// Duplicates counts replies not handed to WireGuard because another
	// link had delivered them already.
	Duplicates uint64 `json:"duplicatesDropped"`
	// Foreign counts datagrams on the WireGuard-side socket from another
	// address than WireGuard's, not handshakes, dropped.
	Foreign uint64 `json:"foreign"`
	// Tunnel is the tunnel's state; Events the last changes of state,
	// oldest first.
	Tunnel Tunnel  `json:"tunnel"`
	Events []Event `json:"events"`
	// ProbeReplies counts the probe replies taken off the links that were
	// not answers to a probe in flight: bad (a forged, replayed or moved
	// reply) and late (a real answer after the probe timeout).
	ProbeReplies ProbeReplies `json:"probeReplies"`
}

// ProbeReplies counts the client's rejected probe replies.
type ProbeReplies struct {
	Bad  uint64 `json:"bad"`
	Late uint64 `json:"late"`
}

// Tunnel is the state of the whole tunnel: "up", "degraded" or "down",
// since when, and why.
type Tunnel struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Reason says why the tunnel is degraded or down.
	Reason string `json:"reason,omitempty"`
	// Probes is "on", "off" or "unanswered" (the server never answered
	// a probe: an original engarde server).
	Probes string `json:"probes"`
}

// Event is one change of state: of a link, or of the tunnel when Link is
// empty.
type Event struct {
	At     time.Time `json:"at"`
	Link   string    `json:"link,omitempty"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// Probe is what a link's probes measured: counts since the link's socket
// opened, figures over the last probe window.
type Probe struct {
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
	// Window is how many probes of the window were judged, Lost how many
	// of them went unanswered, Loss their share (null: none judged).
	Window int      `json:"window"`
	Lost   int      `json:"lost"`
	Loss   *float64 `json:"loss"`
	// RTT percentiles and jitter in milliseconds; null before an answer.
	RTTP50Ms *float64 `json:"rttP50Ms"`
	RTTP99Ms *float64 `json:"rttP99Ms"`
	JitterMs *float64 `json:"jitterMs"`
	// LastAnswer is the number of seconds since a probe was last
	// answered; null if none was.
	LastAnswer *int64 `json:"lastAnswer"`
}

// Interface is one interface in a ClientList.
type Interface struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	// Status is "active", "idle" or "excluded", as the original said
	// (State says more).
	Status        string `json:"status"`
	SenderAddress string `json:"senderAddress"`
	DstAddress    string `json:"dstAddress"`
	// Address repeats SenderAddress for the oldest tools.
	Address string `json:"address"`
	// Last is the number of seconds since a datagram last arrived on the
	// interface's link; null if none did.
	Last *int64 `json:"last"`

	// Additions.
	// State is the link's state: "active", "stalled", "down" or
	// "excluded"; StateAge the number of seconds it has held it.
	State    string `json:"state"`
	StateAge *int64 `json:"stateAge"`
	// Reason says why an interface is not active.
	Reason string `json:"reason,omitempty"`
	// Stalled repeats State == "stalled" for older tools.
	Stalled bool `json:"stalled"`
	// Probe is what the link's probes measured; null without a socket
	// or with probes off.
	Probe *Probe `json:"probe"`
	// Stats are the link socket's counters; null when it has none.
	Stats *SocketStats `json:"stats"`
	// Quality is how the link delivers the server's replies; null when
	// it has no socket.
	Quality *Quality `json:"quality"`
	// Resolution is the destination name's state; absent when the
	// destination is an address.
	Resolution *Resolution `json:"resolution,omitempty"`
}

// Resolution is the state of a destination name, resolved in the
// background: the answer in use (the last good one, kept while DNS fails),
// its age in seconds (null: never resolved), and the last lookup's error
// and its age.
type Resolution struct {
	Name     string   `json:"name"`
	Addrs    []string `json:"addrs"`
	Age      *int64   `json:"age"`
	Error    string   `json:"error,omitempty"`
	ErrorAge *int64   `json:"errorAge,omitempty"`
}

// ServerList is the server's answer to GET /api/v1/get-list.
type ServerList struct {
	Head
	DstAddress string `json:"dstAddress"`
	// Sockets are the client addresses heard from within the client
	// timeout, every session's, as the original listed them.
	Sockets []Socket `json:"sockets"`

	// Additions.
	Run
	ClientTimeout float64     `json:"clientTimeout"` // seconds
	Listen        SocketStats `json:"listen"`        // datagrams from addresses in no session
	Upstream      SocketStats `json:"upstream"`      // the handshake socket to WireGuard
	// NoClient counts replies from WireGuard dropped because their
	// session had no live address.
	NoClient uint64 `json:"noClient"`
	// Duplicates counts datagrams not forwarded to WireGuard because
	// another link had delivered them already.
	Duplicates uint64 `json:"duplicatesDropped"`
	ServerCounters
	// Tunnel is the state over all sessions; Events the last changes of
	// state, oldest first.
	Tunnel Tunnel  `json:"tunnel"`
	Events []Event `json:"events"`
	// Sessions are the clients, each with its addresses: live ones (also
	// in Sockets) and those lingering silent after the client timeout.
	Sessions []Session `json:"sessions"`
}

// ServerCounters count what the server did with datagrams other than a
// session's traffic. They sit at the top level of a ServerList.
type ServerCounters struct {
	// NotWireGuard counts datagrams not shaped like WireGuard's, dropped
	// (unless forwardAnyUDP).
	NotWireGuard uint64 `json:"notWireGuard"`
	// NotMember counts WireGuard-shaped datagrams other than initiations
	// from addresses in no session, dropped.
	NotMember uint64 `json:"notMember"`
	// Foreign counts transport messages from a session's addresses with
	// an index not of their session, dropped.
	Foreign uint64 `json:"foreign"`
	// Initiations counts handshake initiations passed to WireGuard;
	// InitCopies their copies from other links, not passed again; Joins
	// the addresses that joined a session with a copy that came after
	// WireGuard's answer; JoinsRefused such copies that found their
	// session full of addresses carrying traffic.
	Initiations  uint64 `json:"initiations"`
	InitCopies   uint64 `json:"initiationCopies"`
	Joins        uint64 `json:"joins"`
	JoinsRefused uint64 `json:"joinsRefused"`
	// PendingEvicted counts unanswered initiations forgotten to make
	// room.
	PendingEvicted uint64 `json:"pendingEvicted"`
	// Unrouted counts WireGuard's messages on the handshake socket that
	// answer no initiation seen, dropped.
	Unrouted uint64 `json:"unrouted"`
	// ProbesAnswered counts the clients' link probes answered;
	// ProbesRefused those from addresses in no WireGuard session, and
	// ProbesLimited those over an address's rate limit, both dropped
	// unanswered.
	ProbesAnswered uint64 `json:"probesAnswered"`
	ProbesRefused  uint64 `json:"probesRefused"`
	ProbesLimited  uint64 `json:"probesLimited"`
}

// Socket is one client address in a ServerList.
type Socket struct {
	Address string `json:"address"`
	// Last is the number of seconds since the address last sent.
	Last *int64 `json:"last"`

	// Additions.
	LocalAddress string `json:"localAddress"`
	// Session is the ID of the address's session.
	Session uint64    `json:"session"`
	Since   time.Time `json:"since"`
	// Live says whether the address gets replies (it sent within the
	// client timeout).
	Live bool `json:"live"`
	// Slot is the address's stable link number in its session; State
	// "active", or "stalled" when it has stopped sending while another
	// address of its session still sends.
	Slot  int    `json:"slot"`
	State string `json:"state"`
	// Stalled repeats State == "stalled" for older tools.
	Stalled bool        `json:"stalled"`
	Stats   SocketStats `json:"stats"`
	Quality Quality     `json:"quality"`
}

// Session is one client as WireGuard knows it, in a ServerList.
type Session struct {
	ID    uint64    `json:"id"`
	Since time.Time `json:"since"`
	// Endpoint is the session's own socket towards WireGuard: where
	// WireGuard sees the client.
	Endpoint string `json:"endpoint"`
	// Indexes are the receiver indexes judged now, newest first.
	Indexes []uint32 `json:"indexes"`
	// AnyUDP marks forwardAnyUDP's session of non-WireGuard sources.
	AnyUDP    bool     `json:"anyUDP"`
	Addresses []Socket `json:"addresses"`
	// Stats count the session's socket to WireGuard (tx: to WireGuard,
	// rx: its replies).
	Stats SocketStats `json:"stats"`
}

// Quality is how a link (client) or a client address (server) delivers
// its session's WireGuard transport messages, measured on one message in
// 16 since the link or address appeared (engine.Quality).
type Quality struct {
	// Samples is how many sampled messages were judged; First how many
	// the link delivered before any other; Lost how many it never
	// delivered although another link did; Copies how many it delivered
	// after another.
	Samples uint64 `json:"samples"`
	First   uint64 `json:"first"`
	Lost    uint64 `json:"lost"`
	Copies  uint64 `json:"copies"`
	// FirstShare and LossRate are First and Lost over Samples, from 0 to
	// 1; null with no samples.
	FirstShare *float64 `json:"firstShare"`
	LossRate   *float64 `json:"lossRate"`
	// LateP50Ms and LateP99Ms are how far behind the first the copies
	// came, in milliseconds; null with no copies.
	LateP50Ms *float64 `json:"lateP50Ms"`
	LateP99Ms *float64 `json:"lateP99Ms"`
}

// SocketStats are a socket's counters and rates.
type SocketStats struct {
	RxPackets  uint64 `json:"rxPackets"`
	RxBytes    uint64 `json:"rxBytes"`
	TxPackets  uint64 `json:"txPackets"`
	TxBytes    uint64 `json:"txBytes"`
	RxErrors   uint64 `json:"rxErrors"`
	SendErrors uint64 `json:"sendErrors"`
	Drops      Drops  `json:"drops"`
	Rates      Rates  `json:"rates"`
}

// Drops counts dropped datagrams by reason.
type Drops struct {
	Total    uint64 `json:"total"`
	Full     uint64 `json:"full"`     // the link's backlog was full
	Timeout  uint64 `json:"timeout"`  // not sent within writeTimeout
	Error    uint64 `json:"error"`    // the kernel refused it
	Closed   uint64 `json:"closed"`   // the socket closed first
	Oversize uint64 `json:"oversize"` // received, larger than a buffer
}

// Rates are per second, over the last sampling interval (about a second).
type Rates struct {
	RxPackets float64 `json:"rxPps"`
	TxPackets float64 `json:"txPps"`
	RxBits    float64 `json:"rxBps"`
	TxBits    float64 `json:"txBps"`
}

// Result is the answer to an action.
type Result struct {
	// Status is "ok", "already-included" or "already-excluded".
	Status string `json:"status"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func (s *Server) clientList(now time.Time) ClientList {
	return s.clientListOf(now, s.role.Client.ClientStatus())
}

// clientListOf is the list for the client's state st, read at now.
func (s *Server) clientListOf(now time.Time, st ClientStatus) ClientList {
	out := ClientList{
		Head:         Head{Type: "client", Version: s.version, Description: st.Description, ListenAddress: st.ListenAddr},
		Interfaces:   make([]Interface, 0, len(st.Links)),
		Run:          run(now, st.Backend, st.Started),
		WireGuard:    s.stats(keyWireGuard, &st.WireGuard),
		NoLink:       st.NoLink,
		Duplicates:   st.Duplicates,
		Foreign:      st.Foreign,
		Tunnel:       tunnel(st.Tunnel),
		Events:       events(st.Events),
		ProbeReplies: ProbeReplies{Bad: st.ProbesBad, Late: st.ProbesLate},
	}
	for _, l := range st.Links {
		i := Interface{Name: l.Name, Label: l.Label, Status: originalStatus(l.Status), State: l.Status, StateAge: since(now, l.Since), DstAddress: l.Dst, Probe: probe(now, l.Probe)}
		if l.Status != "active" {
			i.Reason = l.Reason
		}
		if r := l.Resolution; r != nil {
			i.Resolution = &Resolution{Name: r.Name, Addrs: make([]string, len(r.Addrs)), Age: since(now, r.Resolved), Error: r.Err}
			for k, a := range r.Addrs {
				i.Resolution.Addrs[k] = a.String()
			}
			if r.Err != "" {
				i.Resolution.ErrorAge = since(now, r.ErrAt)
			}
		}
		if l.Local.IsValid() {
			i.SenderAddress = l.Local.String()
			i.Address = i.SenderAddress
		}
		if c := l.Counters; c != nil {
			i.Last = since(now, c.LastRx)
			i.Stalled = l.Status == string(engine.LinkStalled) // the engine decides (engine/health.go)
			ss := s.stats(keyLink+l.Name, c)
			i.Stats = &ss
			q := quality(l.Quality)
			i.Quality = &q
		}
		out.Interfaces = append(out.Interfaces, i)
	}
	return out
}

func (s *Server) serverList(now time.Time) ServerList {
	return s.serverListOf(now, s.role.Server.ServerStatus())
}

// serverListOf is the list for the server's state st, read at now.
func (s *Server) serverListOf(now time.Time, st ServerStatus) ServerList {
	out := ServerList{
		Head:           Head{Type: "server", Version: s.version, Description: st.Description, ListenAddress: st.ListenAddr},
		DstAddress:     st.DstAddr,
		Sockets:        []Socket{},
		Run:            run(now, st.Backend, st.Started),
		ClientTimeout:  st.ClientTimeout.Seconds(),
		Listen:         s.stats(keyListen, &st.Listen),
		Upstream:       s.stats(keyUpstream, &st.Upstream),
		NoClient:       st.NoPeer,
		Duplicates:     st.Duplicates,
		ServerCounters: st.ServerCounters,
		Sessions:       make([]Session, 0, len(st.Sessions)),
		Tunnel:         tunnel(st.Tunnel),
		Events:         events(st.Events),
	}
	for _, ss := range st.Sessions {
		sess := Session{
			ID:        ss.ID,
			Since:     ss.Since,
			Endpoint:  addrString(ss.Endpoint),
			Indexes:   append([]uint32{}, ss.Indexes...),
			AnyUDP:    ss.AnyUDP,
			Addresses: make([]Socket, 0, len(ss.Addrs)),
			Stats:     s.stats(sessionKey(ss.ID), &ss.Counters),
		}
		for _, p := range ss.Addrs {
			// The engine decides: stalled against the other addresses of
			// its client only (engine/health.go).
			stuck := p.Status == string(engine.LinkStalled)
			state := p.Status
			if state == "" {
				state = string(engine.LinkActive) // an engine that does not say
			}
			sess.Addresses = append(sess.Addresses, Socket{
				Slot:         p.Slot,
				State:        state,
				Address:      p.Addr.String(),
				Last:         since(now, p.LastSeen),
				LocalAddress: p.Local.String(),
				Session:      p.Session,
				Since:        p.Since,
				Live:         p.Live,
				Stalled:      stuck,
				Stats:        s.stats(keyPeer+p.Addr.String(), &p.Counters),
				Quality:      quality(p.Quality),
			})
		}
		for _, a := range sess.Addresses {
			if a.Live {
				out.Sockets = append(out.Sockets, a)
			}
		}
		out.Sessions = append(out.Sessions, sess)
	}
	return out
}

// originalStatus is the original engarde's word for a link state: it
// knew active, idle and excluded.
func originalStatus(state string) string {
	switch engine.LinkStatus(state) {
	case engine.LinkDown:
		return "idle"
	case engine.LinkStalled:
		return string(engine.LinkActive)
	}
	return state
}

func tunnel(t engine.TunnelInfo) Tunnel {
	return Tunnel{State: string(t.State), Since: t.Since, Reason: t.Reason, Probes: t.Probes}
}

func events(es []engine.Event) []Event {
	out := make([]Event, len(es))
	for i, e := range es {
		out[i] = Event{At: e.At, Link: e.Link, From: e.From, To: e.To, Reason: e.Reason}
	}
	return out
}

// probe presents p: ratios only over judged probes, round trips only
// after an answer.
func probe(now time.Time, p *engine.ProbeStats) *Probe {
	if p == nil {
		return nil
	}
	out := &Probe{Sent: p.Sent, Answered: p.Answered, Window: p.Window, Lost: p.Lost, LastAnswer: since(now, p.LastAnswer)}
	if p.Window > 0 {
		l := float64(p.Lost) / float64(p.Window)
		out.Loss = &l
	}
	if !p.LastAnswer.IsZero() {
		r50, r99, j := millis(p.RTT50), millis(p.RTT99), millis(p.Jitter)
		out.RTTP50Ms, out.RTTP99Ms, out.JitterMs = &r50, &r99, &j
	}
	return out
}

// quality presents q: its ratios only with samples, its lateness only
// with copies, so that no figure claims a measurement never made.
func quality(q engine.Quality) Quality {
	out := Quality{Samples: q.Samples, First: q.First, Lost: q.Lost, Copies: q.Copies}
	if q.Samples > 0 {
		fs, lr := q.FirstShare(), q.LossRate()
		out.FirstShare, out.LossRate = &fs, &lr
	}
	if q.Copies > 0 {
		p50, p99 := millis(q.LateP50), millis(q.LateP99)
		out.LateP50Ms, out.LateP99Ms = &p50, &p99
	}
	return out
}

// millis is d in milliseconds, to the microsecond the filter measures.
func millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// addrString is a's text, or "" for the zero address.
func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// stats combines a socket's counters with its rates from the sampler.
func (s *Server) stats(key string, c *engine.Counters) SocketStats {
	return SocketStats{
		RxPackets:  c.RxPackets,
		RxBytes:    c.RxBytes,
		TxPackets:  c.TxPackets,
		TxBytes:    c.TxBytes,
		RxErrors:   c.RxErrors,
		SendErrors: c.SendErrors,
		Drops: Drops{
			Total:    c.DropFull + c.DropTimeout + c.DropError + c.DropClosed + c.Oversize,
			Full:     c.DropFull,
			Timeout:  c.DropTimeout,
			Error:    c.DropError,
			Closed:   c.DropClosed,
			Oversize: c.Oversize,
		},
		Rates: s.rates.get(key),
	}
}

// since returns whole seconds from t to now, or nil for a zero t.
func since(now, t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	d := int64(max(now.Sub(t), 0) / time.Second)
	return &d
}

func run(now time.Time, backend string, started time.Time) Run {
	r := Run{Backend: backend, Started: started}
	if !started.IsZero() {
		r.Uptime = max(now.Sub(started), 0).Seconds()
	}
	return r
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if s.role.Client != nil {
		writeJSON(w, http.StatusOK, s.clientList(now))
		return
	}
	writeJSON(w, http.StatusOK, s.serverList(now))
}

// exclusion modes of the action endpoints.
const (
	swap = iota
	include
	exclude
)

// handleExclusion serves swap-exclusion, include and exclude.
func (s *Server) handleExclusion(mode int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.readInterface(w, r)
		if !ok {
			return
		}
		c := s.role.Client
		res := Result{Status: "ok"}
		var changed bool
		var err error
		switch mode {
		case swap:
			_, err = c.SetExclusion(name, !c.Excluded(name))
		case include:
			if changed, err = c.SetExclusion(name, false); !changed {
				res.Status = "already-included"
			}
		case exclude:
			if changed, err = c.SetExclusion(name, true); !changed {
				res.Status = "already-excluded"
			}
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		s.log.infof("web manager: %s %s (from %s)", actionNames[mode], name, r.RemoteAddr)
		writeJSON(w, http.StatusOK, res)
	}
}

var actionNames = [...]string{swap: "swap-exclusion", include: "include", exclude: "exclude"}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	if err := s.role.Client.ResetExclusions(); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	s.log.infof("web manager: reset-exclusions (from %s)", r.RemoteAddr)
	writeJSON(w, http.StatusOK, Result{Status: "ok"})
}

// maxBody caps a request body: an action's is a few dozen bytes.
const maxBody = 4 << 10

// readInterface decodes {"interface": NAME} and checks that the client
// knows the interface; on failure it has answered with the error.
func (s *Server) readInterface(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req struct {
		Interface *string `json:"interface"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	err := dec.Decode(&req)
	if err == nil {
		// One JSON value and nothing after it.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the JSON object")
			if err2 != nil {
				err = err2
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.Itoa(maxBody)+" bytes")
		return "", false
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, `empty body: want {"interface": NAME}`)
		return "", false
	case err != nil:
		writeError(w, http.StatusBadRequest, `malformed JSON (want {"interface": NAME}): `+err.Error())
		return "", false
	case req.Interface == nil || *req.Interface == "":
		writeError(w, http.StatusBadRequest, `missing "interface": want {"interface": NAME}`)
		return "", false
	}
	name := *req.Interface
	known := slices.ContainsFunc(s.role.Client.ClientStatus().Links, func(l Link) bool { return l.Name == name })
	if !known {
		writeError(w, http.StatusNotFound, "unknown interface "+strconv.Quote(name))
		return "", false
	}
	return name, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Our own types always marshal; this would be a bug.
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}
