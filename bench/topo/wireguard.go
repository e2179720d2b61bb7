package topo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// wgSocketDir is where wireguard-go puts its control (UAPI) sockets. The
// directory is not per namespace, so two interfaces in two namespaces need
// two names.
const wgSocketDir = "/var/run/wireguard"

// WireGuard is a wireguard-go interface in one of a topology's namespaces,
// configured with the wg command (wireguard-tools).
type WireGuard struct {
	// NS and Name are the namespace and the interface.
	NS, Name string
	// Proc is wireguard-go, in the foreground.
	Proc *Proc
	// PublicKey is the interface's public key, base64.
	PublicKey string
	// Port is its UDP listen port.
	Port int

	t *Topo
}

// StartWireGuard runs wireguard-go (the binary wgGo) on /dev/net/tun in
// namespace ns, creating interface name with a fresh key pair, listening on
// port, with address addr (CIDR, "198.19.0.1/24"), up, and no peer yet.
// Close (or the topology's Close) stops it.
func (t *Topo) StartWireGuard(wgGo, ns, name string, port int, addr string) (*WireGuard, error) {
	sock := filepath.Join(wgSocketDir, name+".sock")
	_ = os.Remove(sock) // a leftover from a killed run; usually absent
	p, err := t.Start(ns, nil, wgGo, "-f", name)
	if err != nil {
		return nil, err
	}
	w := &WireGuard{NS: ns, Name: name, Proc: p, Port: port, t: t}
	if err := w.setup(sock, addr); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (w *WireGuard) setup(sock, addr string) error {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-w.Proc.Done():
			return fmt.Errorf("wireguard-go exited: %v: %s", w.Proc.err, w.Proc.Stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard-go made no control socket %s within 5 s: %s", sock, w.Proc.Stderr.String())
		}
	}
	priv, err := wgOutput("", "genkey")
	if err != nil {
		return err
	}
	if w.PublicKey, err = wgOutput(priv, "pubkey"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "engarde-wg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(priv+"\n"), 0o600); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"wg", "set", w.Name, "private-key", keyFile, "listen-port", fmt.Sprint(w.Port)},
		{"ip", "addr", "add", addr, "dev", w.Name},
		{"ip", "link", "set", w.Name, "up"},
	} {
		if _, err := w.t.Exec(w.NS, args...); err != nil {
			return err
		}
	}
	return nil
}

// SetPeer configures the interface's peer: its public key, its endpoint
// (host:port; empty to learn it from the peer's packets) and the addresses
// routed to it (CIDR, comma-separated). Setting another endpoint later
// moves the traffic at once.
func (w *WireGuard) SetPeer(publicKey, endpoint, allowedIPs string) error {
	args := []string{"wg", "set", w.Name, "peer", publicKey, "allowed-ips", allowedIPs}
	if endpoint != "" {
		args = append(args, "endpoint", endpoint)
	}
	_, err := w.t.Exec(w.NS, args...)
	return err
}

// RemovePeer removes a peer, with its session: set again, it starts with
// a new handshake.
func (w *WireGuard) RemovePeer(publicKey string) error {
	_, err := w.t.Exec(w.NS, "wg", "set", w.Name, "peer", publicKey, "remove")
	return err
}

// Close stops wireguard-go (its interface goes with it) and removes its
// control socket.
func (w *WireGuard) Close() error {
	err := w.Proc.Stop()
	_ = os.Remove(filepath.Join(wgSocketDir, w.Name+".sock")) // wireguard-go removes it itself when it stops cleanly
	return err
}

// wgOutput runs wg with args and input on its standard input, returning
// its trimmed output.
func wgOutput(input string, args ...string) (string, error) {
	cmd := exec.Command("wg", args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("wg %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
