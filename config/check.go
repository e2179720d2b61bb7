package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// checkAddr checks that s is host:port with a port from 1 to 65535 and a
// host that is an IP address or a syntactically valid DNS name (IPv6 in
// brackets). The host may be empty only when needHost is false.
func checkAddr(s string, needHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason := strings.TrimSuffix(ae.Err, " in address")
			if reason == "too many colons" {
				return fmt.Errorf("invalid address %s: too many colons; put an IPv6 host in brackets, as in [2001:db8::1]:59501", quote(s))
			}
			return fmt.Errorf("invalid address %s: %s; expected host:port", quote(s), reason)
		}
		return fmt.Errorf("invalid address %s: %v", quote(s), err)
	}
	if port == "" {
		return fmt.Errorf("invalid address %s: missing port; expected host:port", quote(s))
	}
	p, err := strconv.ParseUint(port, 10, 64)
	if err != nil {
		if strings.Trim(port, "0123456789") == "" {
			return fmt.Errorf("invalid address %s: port must be between 1 and 65535", quote(s))
		}
		return fmt.Errorf("invalid address %s: port %s is not a number", quote(s), quote(port))
	}
	if p < 1 || p > 65535 {
		return fmt.Errorf("invalid address %s: port must be between 1 and 65535", quote(s))
	}
	if host == "" {
		if needHost {
			return fmt.Errorf("invalid address %s: missing host", quote(s))
		}
		return nil
	}
	if err := checkHost(host); err != nil {
		return fmt.Errorf("invalid address %s: %v", quote(s), err)
	}
	return nil
}

// checkHost checks that h is an IP address (IPv6 possibly with a zone) or
// a host name made of dot-separated labels of letters, digits, hyphens and
// underscores.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.ContainsAny(h, ":%") {
		return fmt.Errorf("%s is not a valid IPv6 address", quote(h))
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%s is not a valid host name", quote(h))
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return fmt.Errorf("%s is not a valid host name", quote(h))
		}
	}
	// No top-level domain is all digits (RFC 3696 section 2), so this is
	// a mistyped IPv4 address such as 192.0.2.300.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("%s is not a valid IPv4 address", quote(h))
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ceilPow2 rounds n up to a power of two; n must be positive and at most
// 1<<30.
func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// suggest returns the known key closest to name, if it is close enough to
// be a likely typo: equal ignoring case, or a few edits away.
func suggest(name string, known []string) string {
	lname := []rune(strings.ToLower(name))
	best, bestDist := "", -1
	for _, k := range known {
		if strings.EqualFold(name, k) {
			return k
		}
		limit := min(1+len(k)/5, 3)
		lk := []rune(strings.ToLower(k))
		if abs(len(lname)-len(lk)) > limit {
			continue
		}
		if dist := editDistance(lname, lk); dist <= limit && (bestDist < 0 || dist < bestDist) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent runes.
func editDistance(a, b []rune) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// join appends key name to path: path.name, or path["odd name"] when the
// name is not a plain identifier.
func join(path, name string) string {
	plain := name != ""
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + quote(name) + "]"
	case path == "":
		return name
	}
	return path + "." + name
}

// index appends a list index to path: path[i].
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// maxQuoted bounds the runes of a value quoted in a message.
const maxQuoted = 64

// quote quotes s for a message, shortening a long value.
func quote(s string) string {
	if c := clip(s); c != s {
		return strconv.Quote(c[:len(c)-3]) + "..."
	}
	return strconv.Quote(s)
}

// clip shortens s to maxQuoted runes and "...".
func clip(s string) string {
	if utf8.RuneCountInString(s) <= maxQuoted {
		return s
	}
	return string([]rune(s)[:maxQuoted]) + "..."
}

// list formats allowed values as "a", "b" or "c".
func list(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "no value"
		case "!!int", "!!float":
			return "the number " + clip(n.Value)
		case "!!bool":
			return n.Value
		}
		return "the string " + quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}
