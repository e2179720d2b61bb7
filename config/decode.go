package config

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/engarde-project/engarde/config/defaults"
	"gopkg.in/yaml.v3"
)

// Known keys, in the order engarde.yml.sample documents them. Each list
// must match the switch that decodes the mapping; TestSampleCoversEveryKey
// checks them against engarde.yml.sample, which loads without error.
var (
	topKeys        = []string{"client", "server"}
	clientKeys     = []string{"description", "listenAddr", "dstAddr", "writeTimeout", "excludedInterfaces", "interfaceLabels", "dstOverrides", "webManager", "fwmark", "stateFile", "controlSocket", "probeInterval", "log", "engine"}
	serverKeys     = []string{"description", "listenAddr", "dstAddr", "clientTimeout", "writeTimeout", "forwardAnyUDP", "stateFile", "controlSocket", "webManager", "log", "engine"}
	overrideKeys   = []string{"ifName", "dstAddr"}
	labelKeys      = []string{"ifName", "label"}
	webManagerKeys = []string{"listenAddr", "username", "password", "allowedHosts", "certFile", "keyFile", "metricsListenAddr"}
	logKeys        = []string{"level", "format"}
	engineKeys     = []string{"backend", "batchSize", "queueLength", "bufferSize", "gso", "gro", "dedup"}
)

const (
	// maxErrors caps the problems reported for one file; past it the
	// rest would be noise.
	maxErrors = 50
	// maxVisits caps the nodes looked at, so that aliases cannot make a
	// small file expensive to check (each alias is walked again where it
	// is used).
	maxVisits = 1 << 18
	// maxMergeDepth caps merge keys that merge mappings that merge, which
	// also stops a mapping that merges itself.
	maxMergeDepth = 16
	// maxAliasChain bounds following an alias; yaml.v3 never chains them,
	// so this only guards against a surprise.
	maxAliasChain = 8

	// maxMillis and maxSeconds keep timeouts within a time.Duration.
	maxMillis  = math.MaxInt64 / int64(time.Millisecond)
	maxSeconds = math.MaxInt64 / int64(time.Second)
)

// parseYAML parses data into a node tree.
func parseYAML(data []byte) (doc *yaml.Node, err error) {
	// yaml.v3 reports syntax errors by panicking internally and
	// recovering; anything else escaping it is a parser bug triggered by
	// input, which should fail this file rather than the program.
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	doc = new(yaml.Node)
	if err := yaml.Unmarshal(data, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

var yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 syntax error into an *Error at the line the
// message names ("yaml: line 5: ...").
func syntaxError(file string, data []byte, err error) error {
	msg, line := err.Error(), 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if len(msg) > 6 && msg[:6] == "yaml: " {
		msg = msg[6:]
	}
	// yaml.v3 may name the line after the last one for an error at the
	// end of the input.
	line = min(line, countLines(utf8Text(data)))
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// utf8Text returns data as UTF-8: yaml.v3 also reads UTF-16 that starts
// with a byte order mark, and counts lines in the decoded text.
func utf8Text(data []byte) []byte {
	if len(data) < 2 {
		return data
	}
	var order binary.ByteOrder
	switch {
	case data[0] == 0xFF && data[1] == 0xFE:
		order = binary.LittleEndian
	case data[0] == 0xFE && data[1] == 0xFF:
		order = binary.BigEndian
	default:
		return data
	}
	units := make([]uint16, 0, len(data)/2)
	for i := 2; i+1 < len(data); i += 2 {
		units = append(units, order.Uint16(data[i:]))
	}
	return []byte(string(utf16.Decode(units)))
}

// countLines counts lines the way YAML does: CR LF, CR, LF, NEL, LS and PS
// each end one.
func countLines(data []byte) int {
	n := 1
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\n':
			n++
		case c == '\r':
			n++
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
		case c == 0xC2 && i+1 < len(data) && data[i+1] == 0x85: // NEL
			n++
			i++
		case c == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9): // LS, PS
			n++
			i += 2
		}
	}
	return n
}

// decoder walks the node tree of one file, collecting problems.
type decoder struct {
	file      string
	errs      []*Error
	visits    int
	tooLarge  bool
	truncated bool
}

// errorf records a problem at n (or nowhere, when n is nil) for key.
func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.truncated = true
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// result returns nil, the one problem found, or all of them in file order.
func (d *decoder) result() error {
	if d.tooLarge {
		return &Error{File: d.file, Msg: fmt.Sprintf("too complex: aliases expand to more than %d values", maxVisits)}
	}
	if len(d.errs) == 0 {
		return nil
	}
	if len(d.errs) == 1 {
		return d.errs[0]
	}
	// File order; problems with no line (a missing section) go last.
	at := func(e *Error) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return at(d.errs[i]) < at(d.errs[j]) })
	errs := make([]error, 0, len(d.errs)+1)
	for _, e := range d.errs {
		errs = append(errs, e)
	}
	if d.truncated {
		errs = append(errs, &Error{File: d.file, Msg: fmt.Sprintf("too many errors; only the first %d are shown", maxErrors)})
	}
	return errors.Join(errs...)
}

// resolve follows an alias to the node it names, and counts the visit.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < maxAliasChain; i++ {
		n = n.Alias
	}
	if d.visits++; d.visits > maxVisits {
		d.tooLarge = true
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// pair is one entry of a mapping.
type pair struct {
	name     string
	key, val *yaml.Node
}

// mapping returns the entries of the mapping n, or false after reporting
// that n is not a mapping. A null n is an empty mapping.
func (d *decoder) mapping(path string, n *yaml.Node) ([]pair, bool) {
	r := d.resolve(n)
	if isNull(r) {
		return nil, true
	}
	if r.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of keys to values, got %s", describe(r))
		return nil, false
	}
	return d.pairs(path, r, 0), true
}

// pairs lists the entries of mapping m: its own keys in file order, then
// the keys brought in with merge keys (<<) that m does not set itself.
// Duplicate keys are reported; the first one counts.
func (d *decoder) pairs(path string, m *yaml.Node, depth int) []pair {
	var out []pair
	var merges []*yaml.Node
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(m.Content) && !d.tooLarge; i += 2 {
		k, v := d.resolve(m.Content[i]), m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "expected a key name, got %s", describe(k))
			continue
		}
		name := k.Value
		if first, ok := seen[name]; ok {
			d.errorf(k, join(path, name), "duplicate key %s (first set on line %d)", quote(name), first.Line)
			continue
		}
		seen[name] = k
		out = append(out, pair{name: name, key: k, val: v})
	}
	for _, mv := range merges {
		for _, src := range d.mergeSources(path, mv) {
			if depth >= maxMergeDepth {
				d.errorf(src, path, "merge keys nested more than %d deep", maxMergeDepth)
				return out
			}
			for _, p := range d.pairs(path, src, depth+1) {
				if _, ok := seen[p.name]; !ok {
					seen[p.name] = p.key
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// mergeSources returns the mappings a merge key's value names: a mapping
// or a list of them.
func (d *decoder) mergeSources(path string, v *yaml.Node) []*yaml.Node {
	v = d.resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, it := range v.Content {
			if d.tooLarge {
				break
			}
			if it = d.resolve(it); it.Kind == yaml.MappingNode {
				out = append(out, it)
			} else {
				d.errorf(it, path, "merge key (<<) expected a mapping to merge, got %s", describe(it))
			}
		}
		return out
	}
	d.errorf(v, path, "merge key (<<) expected a mapping or a list of mappings, got %s", describe(v))
	return nil
}

// unknown reports key p as not one of known, suggesting a near miss, and
// returns the suggestion.
func (d *decoder) unknown(path string, p pair, known []string) string {
	s := suggest(p.name, known)
	if s != "" {
		d.errorf(p.key, path, "unknown key %s (did you mean %q?)", quote(p.name), s)
	} else {
		d.errorf(p.key, path, "unknown key %s", quote(p.name))
	}
	return s
}

// str decodes a string. Any scalar is taken as written, as the original's
// YAML library did (password: 1234 is "1234"); null is "". It returns
// false after reporting a list or mapping.
func (d *decoder) str(path string, n *yaml.Node) (string, bool) {
	r := d.resolve(n)
	if isNull(r) {
		return "", true
	}
	if r.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a string, got %s", describe(r))
		return "", false
	}
	if r.ShortTag() == "!!binary" {
		var s string
		if err := r.Decode(&s); err != nil {
			d.errorf(n, path, "invalid !!binary value")
			return "", false
		}
		return s, true
	}
	return r.Value, true
}

// integer decodes an integer; what describes it for the type error. It
// returns false for null (no error) and after reporting anything else
// that is not an integer.
func (d *decoder) integer(path string, n *yaml.Node, what string) (int64, bool) {
	r := d.resolve(n)
	if isNull(r) {
		return 0, false
	}
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!int" {
		d.errorf(n, path, "expected %s, got %s", what, describe(r))
		return 0, false
	}
	var v int64
	if err := r.Decode(&v); err != nil {
		d.errorf(n, path, "number %s is too large", clip(r.Value))
		return 0, false
	}
	return v, true
}

// intRange decodes an integer within lo..hi, or returns def for null and
// after reporting a problem.
func (d *decoder) intRange(path string, n *yaml.Node, lo, hi, def int) int {
	v, ok := d.integer(path, n, "an integer")
	if !ok {
		return def
	}
	if v < int64(lo) || v > int64(hi) {
		d.errorf(n, path, "%s is out of range; must be between %d and %d", clip(d.resolve(n).Value), lo, hi)
		return def
	}
	return int(v)
}

// boolean decodes true or false (also yes/no/on/off), or returns def for
// null and after reporting a problem.
func (d *decoder) boolean(path string, n *yaml.Node, def bool) bool {
	r := d.resolve(n)
	if isNull(r) {
		return def
	}
	var v bool
	if r.Kind != yaml.ScalarNode || r.Decode(&v) != nil {
		d.errorf(n, path, "expected true or false, got %s", describe(r))
		return def
	}
	return v
}

// oneOf decodes a string from allowed (compared case-insensitively), or
// returns def for null or empty and after reporting a problem.
func (d *decoder) oneOf(path string, n *yaml.Node, allowed []string, def string) string {
	s, ok := d.str(path, n)
	if !ok || s == "" {
		return def
	}
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	d.errorf(n, path, "%s is not allowed; use one of %s", quote(s), list(allowed))
	return def
}

// addr decodes and checks a host:port address. needHost rejects an empty
// host, which is fine for a listen address.
func (d *decoder) addr(path string, n *yaml.Node, needHost bool) (string, bool) {
	s, ok := d.str(path, n)
	if !ok {
		return "", false
	}
	if s == "" {
		return "", true
	}
	if err := checkAddr(s, needHost); err != nil {
		d.errorf(n, path, "%v", err)
		return "", false
	}
	return s, true
}

// required decodes a required host:port address, reporting an empty one.
func (d *decoder) required(path string, n *yaml.Node, needHost bool) string {
	s, ok := d.addr(path, n, needHost)
	if ok && s == "" {
		d.errorf(n, path, "must not be empty")
	}
	return s
}

// missing reports required keys of a mapping that are not there, at the
// line of the mapping's own key (or first line). got holds the keys found,
// and also the suggestions made for unknown keys: a misspelt key has
// already been reported once.
func (d *decoder) missing(at *yaml.Node, path string, got map[string]bool, keys ...string) {
	for _, k := range keys {
		if !got[k] {
			d.errorf(at, join(path, k), "missing required key %q", k)
		}
	}
}

// document decodes the section of role from the parsed file.
func (d *decoder) document(doc *yaml.Node, role Role) *Config {
	want := role.String()
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = d.resolve(doc.Content[0])
	}
	if isNull(root) {
		d.errorf(nil, "", "no %s section", want)
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a mapping with a %s section, got %s", want, describe(root))
		return nil
	}
	cfg := &Config{File: d.file, Role: role}
	found := false
	for _, p := range d.pairs("", root, 0) {
		switch p.name {
		case want:
			found = true
			if role == RoleClient {
				cfg.Client = d.client(want, p)
			} else {
				cfg.Server = d.server(want, p)
			}
		case "client", "server":
			// The other program's section: not ours to check.
		default:
			if d.unknown(join("", p.name), p, topKeys) == want {
				found = true // misspelt, and reported as such
			}
		}
	}
	if !found {
		d.errorf(nil, "", "no %s section", want)
	}
	return cfg
}

// client decodes the client section sec.
func (d *decoder) client(path string, sec pair) *Client {
	c := &Client{
		WriteTimeout:    defaults.WriteTimeout,
		ProbeInterval:   defaults.ProbeInterval,
		InterfaceLabels: map[string]string{},
		Log:             defaultLog(),
		Engine:          defaultEngine(),
	}
	common := shared{&c.Description, &c.ListenAddr, &c.DstAddr, &c.WriteTimeout, &c.WebManager, &c.Log, &c.Engine}
	d.section(path, sec, common, clientKeys, func(kp string, p pair) bool {
		switch p.name {
		case "excludedInterfaces":
			c.ExcludedInterfaces = d.ifNames(kp, p.val)
		case "interfaceLabels":
			c.InterfaceLabels = d.labels(kp, p.val)
		case "dstOverrides":
			c.DstOverrides = d.overrides(kp, p.val)
		case "stateFile":
			f, _ := d.str(kp, p.val)
			c.StateFile = d.relative(f)
		case "controlSocket":
			c.ControlSocket = d.controlSocket(kp, p.val)
		case "probeInterval":
			c.ProbeInterval = d.probeInterval(kp, p.val)
		case "fwmark":
			if v, ok := d.integer(kp, p.val, "an integer"); ok {
				if v < 0 || v > maxFwMark {
					d.errorf(p.val, kp, "%s is out of range; must be between 0 and 0xFFFFFFFF", clip(d.resolve(p.val).Value))
				} else {
					c.FwMark = uint32(v)
				}
			}
		default:
			return false
		}
		return true
	})
	return c
}

// section decodes a role's section sec: the keys both roles have into
// common, the others through own, which reports whether it knew the key;
// keys lists the section's keys, for "did you mean" on unknown ones.
func (d *decoder) section(path string, sec pair, common shared, keys []string, own func(kp string, p pair) bool) {
	ps, ok := d.mapping(path, sec.val)
	if !ok {
		return
	}
	got := make(map[string]bool)
	for _, p := range ps {
		kp := join(path, p.name)
		got[p.name] = true
		if d.sharedKey(kp, p, common) || own(kp, p) {
			continue
		}
		got[p.name] = false
		got[d.unknown(kp, p, keys)] = true
	}
	d.missing(sec.key, path, got, "listenAddr", "dstAddr")
}

// shared points at the fields both sections have.
type shared struct {
	description, listenAddr, dstAddr *string
	writeTimeout                     *time.Duration
	webManager                       *WebManager
	log                              *Log
	engine                           *Engine
}

// sharedKey decodes p into f when it is a key both sections have, and
// reports whether it was.
func (d *decoder) sharedKey(kp string, p pair, f shared) bool {
	switch p.name {
	case "description":
		*f.description, _ = d.str(kp, p.val)
	case "listenAddr":
		*f.listenAddr = d.required(kp, p.val, false)
	case "dstAddr":
		*f.dstAddr = d.required(kp, p.val, true)
	case "writeTimeout":
		*f.writeTimeout = d.writeTimeout(kp, p.val)
	case "webManager":
		*f.webManager = d.webManager(kp, p.val)
	case "log":
		*f.log = d.log(kp, p.val)
	case "engine":
		*f.engine = d.engine(kp, p.val)
	default:
		return false
	}
	return true
}

// server decodes the server section sec.
func (d *decoder) server(path string, sec pair) *Server {
	s := &Server{
		ClientTimeout: defaults.ClientTimeout,
		WriteTimeout:  defaults.WriteTimeout,
		Log:           defaultLog(),
		Engine:        defaultEngine(),
	}
	common := shared{&s.Description, &s.ListenAddr, &s.DstAddr, &s.WriteTimeout, &s.WebManager, &s.Log, &s.Engine}
	d.section(path, sec, common, serverKeys, func(kp string, p pair) bool {
		switch p.name {
		case "clientTimeout":
			s.ClientTimeout = d.clientTimeout(kp, p.val)
		case "forwardAnyUDP":
			s.ForwardAnyUDP = d.boolean(kp, p.val, defaults.ForwardAnyUDP)
		case "stateFile":
			f, _ := d.str(kp, p.val)
			s.StateFile = d.relative(f)
		case "controlSocket":
			s.ControlSocket = d.controlSocket(kp, p.val)
		default:
			return false
		}
		return true
	})
	return s
}

// writeTimeout decodes milliseconds: 0 or null is the default, negative
// disables the timeout (-1).
func (d *decoder) writeTimeout(path string, n *yaml.Node) time.Duration {
	v, ok := d.integer(path, n, "an integer number of milliseconds")
	switch {
	case !ok || v == 0:
		return defaults.WriteTimeout
	case v < 0:
		return -1
	case v > maxMillis:
		d.errorf(n, path, "%d is too large; must be at most %d milliseconds", v, maxMillis)
		return defaults.WriteTimeout
	}
	return time.Duration(v) * time.Millisecond
}

// probeInterval decodes milliseconds: null is the default, 0 turns probes
// off (-1), anything else must be within the bounds.
func (d *decoder) probeInterval(path string, n *yaml.Node) time.Duration {
	if isNull(d.resolve(n)) {
		return defaults.ProbeInterval
	}
	v, ok := d.integer(path, n, "an integer number of milliseconds")
	lo, hi := int64(defaults.MinProbeInterval/time.Millisecond), int64(defaults.MaxProbeInterval/time.Millisecond)
	switch {
	case !ok:
		return defaults.ProbeInterval
	case v == 0:
		return -1
	case v < lo || v > hi:
		d.errorf(n, path, "%d is out of range; must be between %d and %d milliseconds, or 0 for no probes", v, lo, hi)
		return defaults.ProbeInterval
	}
	return time.Duration(v) * time.Millisecond
}

// clientTimeout decodes seconds: 0 or null is the default, negative is an
// error.
func (d *decoder) clientTimeout(path string, n *yaml.Node) time.Duration {
	v, ok := d.integer(path, n, "an integer number of seconds")
	switch {
	case !ok || v == 0:
		return defaults.ClientTimeout
	case v < 0:
		d.errorf(n, path, "%d must not be negative (0 or no value selects the default, %d seconds)", v, int(defaults.ClientTimeout/time.Second))
		return defaults.ClientTimeout
	case v > maxSeconds:
		d.errorf(n, path, "%d is too large; must be at most %d seconds", v, maxSeconds)
		return defaults.ClientTimeout
	}
	return time.Duration(v) * time.Second
}

// sequence returns the items of the list n, or false after reporting that
// n is not a list; what names the expected list. A null n is empty.
func (d *decoder) sequence(path string, n *yaml.Node, what string) ([]*yaml.Node, bool) {
	r := d.resolve(n)
	if isNull(r) {
		return nil, true
	}
	if r.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected %s, got %s", what, describe(r))
		return nil, false
	}
	return r.Content, true
}

// ifName decodes a non-empty interface name.
func (d *decoder) ifName(path string, n *yaml.Node) (string, bool) {
	s, ok := d.str(path, n)
	if ok && s == "" {
		d.errorf(n, path, "interface name must not be empty")
		return "", false
	}
	return s, ok
}

// ifNames decodes excludedInterfaces.
func (d *decoder) ifNames(path string, n *yaml.Node) []string {
	items, _ := d.sequence(path, n, "a list of interface names")
	var out []string
	for i, it := range items {
		if d.tooLarge {
			break
		}
		if s, ok := d.ifName(index(path, i), it); ok {
			out = append(out, s)
		}
	}
	return out
}

// labels decodes interfaceLabels, either a mapping of interface name to
// label or a list of {ifName, label} mappings.
func (d *decoder) labels(path string, n *yaml.Node) map[string]string {
	out := make(map[string]string)
	r := d.resolve(n)
	switch {
	case isNull(r):
	case r.Kind == yaml.MappingNode:
		for _, p := range d.pairs(path, r, 0) {
			kp := join(path, p.name)
			if p.name == "" {
				d.errorf(p.key, kp, "interface name must not be empty")
				continue
			}
			if s, ok := d.str(kp, p.val); ok {
				out[p.name] = s
			}
		}
	case r.Kind == yaml.SequenceNode:
		first := make(map[string]int)
		for i, it := range r.Content {
			if d.tooLarge {
				break
			}
			ip := index(path, i)
			ps, ok := d.mapping(ip, it)
			if !ok {
				continue
			}
			var name, label string
			var nameNode *yaml.Node
			got := make(map[string]bool)
			good := true
			for _, p := range ps {
				kp := join(ip, p.name)
				switch p.name {
				case "ifName":
					nameNode = p.val
					name, ok = d.ifName(kp, p.val)
					good = good && ok
				case "label":
					label, ok = d.str(kp, p.val)
					good = good && ok
				default:
					got[d.unknown(kp, p, labelKeys)] = true
				}
			}
			if nameNode == nil {
				d.missing(it, ip, got, "ifName")
				continue
			}
			if !good {
				continue
			}
			if line, dup := first[name]; dup {
				d.errorf(nameNode, join(ip, "ifName"), "duplicate label for interface %s (first on line %d)", quote(name), line)
				continue
			}
			first[name] = nameNode.Line
			out[name] = label
		}
	default:
		d.errorf(n, path, "expected a mapping of interface name to label, or a list of {ifName, label}, got %s", describe(r))
	}
	return out
}

// overrides decodes dstOverrides.
func (d *decoder) overrides(path string, n *yaml.Node) []DstOverride {
	items, _ := d.sequence(path, n, "a list of {ifName, dstAddr}")
	var out []DstOverride
	first := make(map[string]int)
	for i, it := range items {
		if d.tooLarge {
			break
		}
		ip := index(path, i)
		if isNull(d.resolve(it)) {
			d.errorf(it, ip, "empty override; expected ifName and dstAddr")
			continue
		}
		ps, ok := d.mapping(ip, it)
		if !ok {
			continue
		}
		var o DstOverride
		var nameNode *yaml.Node
		got := make(map[string]bool)
		good := true
		for _, p := range ps {
			kp := join(ip, p.name)
			got[p.name] = true
			switch p.name {
			case "ifName":
				nameNode = p.val
				o.IfName, ok = d.ifName(kp, p.val)
				good = good && ok
			case "dstAddr":
				o.DstAddr = d.required(kp, p.val, true)
				good = good && o.DstAddr != ""
			default:
				got[p.name] = false
				got[d.unknown(kp, p, overrideKeys)] = true
			}
		}
		d.missing(it, ip, got, "ifName", "dstAddr")
		if !good || nameNode == nil || o.DstAddr == "" {
			continue
		}
		if line, dup := first[o.IfName]; dup {
			d.errorf(nameNode, join(ip, "ifName"), "duplicate override for interface %s (first on line %d)", quote(o.IfName), line)
			continue
		}
		first[o.IfName] = nameNode.Line
		out = append(out, o)
	}
	return out
}

// webManager decodes a webManager block. The credentials and the
// certificate files come in pairs: a file that sets one of a pair alone
// is refused, so that a mistake never serves without the login or the
// encryption the operator meant.
func (d *decoder) webManager(path string, n *yaml.Node) WebManager {
	var w WebManager
	ps, _ := d.mapping(path, n)
	set := map[string]*yaml.Node{} // the keys set to a non-empty value
	var metricsAt *yaml.Node
	for _, p := range ps {
		kp := join(path, p.name)
		var v string
		switch p.name {
		case "listenAddr":
			w.ListenAddr, _ = d.addr(kp, p.val, false)
		case "metricsListenAddr":
			w.MetricsListenAddr, _ = d.addr(kp, p.val, false)
			metricsAt = p.val
		case "username":
			w.Username, _ = d.str(kp, p.val)
			v = w.Username
		case "password":
			w.Password, _ = d.str(kp, p.val)
			v = w.Password
		case "allowedHosts":
			w.AllowedHosts = d.hostNames(kp, p.val)
		case "certFile":
			w.CertFile, _ = d.str(kp, p.val)
			v = w.CertFile
		case "keyFile":
			w.KeyFile, _ = d.str(kp, p.val)
			v = w.KeyFile
		default:
			d.unknown(kp, p, webManagerKeys)
		}
		if v != "" {
			set[p.name] = p.key
		}
	}
	d.pair(path, set, "username", "password", "a login needs both; set neither for none")
	d.pair(path, set, "certFile", "keyFile", "HTTPS needs both; set neither for plain HTTP")
	w.CertFile, w.KeyFile = d.relative(w.CertFile), d.relative(w.KeyFile)
	if w.MetricsListenAddr != "" && w.ListenAddr != "" && samePort(w.ListenAddr, w.MetricsListenAddr) {
		d.errorf(metricsAt, join(path, "metricsListenAddr"), "%s takes the port of listenAddr (%s): the metrics listener needs its own address", quote(w.MetricsListenAddr), quote(w.ListenAddr))
	}
	return w
}

// samePort reports whether two listen addresses (host:port, checked)
// would take the same socket: the same port, and the same host or a
// wildcard one (empty, 0.0.0.0 or ::) on either side.
func samePort(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ha, hb) || wild(ha) || wild(hb)
}

// pair reports a key of the pair a, b that is set (in set) without the
// other, at the line of the one that is set.
func (d *decoder) pair(path string, set map[string]*yaml.Node, a, b, why string) {
	for _, k := range [][2]string{{a, b}, {b, a}} {
		if at, ok := set[k[0]]; ok && set[k[1]] == nil {
			d.errorf(at, join(path, k[1]), "missing or empty, but %s is set on line %d: %s", k[0], at.Line, why)
		}
	}
}

// controlSocket reads a controlSocket key: a path, relative to the
// configuration file's directory, or "off" (also written false or none),
// which turns the socket off.
func (d *decoder) controlSocket(kp string, n *yaml.Node) string {
	f, _ := d.str(kp, n)
	switch strings.ToLower(f) {
	case defaults.ControlSocketOff, "false", "none":
		return defaults.ControlSocketOff
	}
	return d.relative(f)
}

// relative takes a relative file name from the configuration file's
// directory.
func (d *decoder) relative(name string) string {
	if name == "" || filepath.IsAbs(name) || d.file == "" {
		return name
	}
	return filepath.Join(filepath.Dir(d.file), name)
}

// hostNames decodes allowedHosts: host names or IP addresses, without a
// port.
func (d *decoder) hostNames(path string, n *yaml.Node) []string {
	items, _ := d.sequence(path, n, "a list of host names")
	var out []string
	for i, it := range items {
		if d.tooLarge {
			break
		}
		ip := index(path, i)
		s, ok := d.str(ip, it)
		if !ok {
			continue
		}
		if h, port, err := net.SplitHostPort(s); err == nil {
			d.errorf(it, ip, "%s: write the host without the port (%s, not %s)", quote(s), quote(h), quote(h+":"+port))
			continue
		}
		if err := checkHost(strings.Trim(s, "[]")); err != nil || s == "" {
			if s == "" {
				err = errors.New("must not be empty")
			}
			d.errorf(it, ip, "%v", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// log decodes a log block.
func (d *decoder) log(path string, n *yaml.Node) Log {
	l := defaultLog()
	ps, _ := d.mapping(path, n)
	for _, p := range ps {
		kp := join(path, p.name)
		switch p.name {
		case "level":
			l.Level = d.oneOf(kp, p.val, defaults.LogLevels, defaults.LogLevel)
		case "format":
			l.Format = d.oneOf(kp, p.val, defaults.LogFormats, defaults.LogFormat)
		default:
			d.unknown(kp, p, logKeys)
		}
	}
	return l
}

// engine decodes an engine block.
func (d *decoder) engine(path string, n *yaml.Node) Engine {
	e := defaultEngine()
	ps, _ := d.mapping(path, n)
	for _, p := range ps {
		kp := join(path, p.name)
		switch p.name {
		case "backend":
			e.Backend = d.oneOf(kp, p.val, Backends, defaults.Backend)
		case "batchSize":
			e.BatchSize = d.intRange(kp, p.val, defaults.MinBatchSize, defaults.MaxBatchSize, defaults.BatchSize)
		case "queueLength":
			e.QueueLength = ceilPow2(d.intRange(kp, p.val, defaults.MinQueueLength, defaults.MaxQueueLength, defaults.QueueLength))
		case "bufferSize":
			e.BufferSize = d.intRange(kp, p.val, defaults.MinBufferSize, defaults.MaxBufferSize, defaults.BufferSize)
		case "gso":
			e.GSO = d.boolean(kp, p.val, defaults.GSO)
		case "gro":
			e.GRO = d.boolean(kp, p.val, defaults.GRO)
		case "dedup":
			e.Dedup = d.boolean(kp, p.val, defaults.Dedup)
		default:
			d.unknown(kp, p, engineKeys)
		}
	}
	return e
}
