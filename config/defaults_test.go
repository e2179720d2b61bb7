package config_test

// The defaults are written down in three places besides config/defaults:
// engarde.yml.sample, the README's key table, and what config applies to a
// file that leaves keys out. These tests fail when one of them changes
// alone.
//
// How the documents state a default, which the tests rely on:
//   - engarde.yml.sample: in the comment block right above the key, as
//     "Default: X" or "the default, X" (in the key's own unit: milliseconds
//     for writeTimeout, seconds for clientTimeout); the sample also sets
//     every defaulted key to its default, so copying it changes nothing.
//     Ranges are written "A to B", and the accepted values of backend,
//     log.level and log.format are listed in the comment's first sentence,
//     "a, b or c", each optionally followed by a remark in parentheses.
//   - README.md, the table under "| key | role | meaning |": in the row of
//     the key, or for the keys of log and engine in their section's row
//     after the key in backquotes, as "default: X" (or "default, X"); the
//     same for ranges and lists.

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/engarde-project/engarde/config"
	"github.com/engarde-project/engarde/config/defaults"
	"gopkg.in/yaml.v3"
)

const (
	sampleFile = "../engarde.yml.sample"
	readmeFile = "../README.md"
)

// documented is one key that has a default, as a section-relative path.
type documented struct {
	key     string // such as "writeTimeout" or "engine.batchSize"
	server  bool   // in the server section
	client  bool   // in the client section
	want    string // the default as the documents write it
	min     string // the range, for keys that have one
	max     string
	allowed []string // the accepted values, for keys that list them
}

// table is every user-facing default, from config/defaults. A key of
// config.Engine or config.Log missing here fails TestDefaultsApplied.
var table = []documented{
	{key: "writeTimeout", client: true, server: true, want: millis(defaults.WriteTimeout)},
	{key: "clientTimeout", server: true, want: seconds(defaults.ClientTimeout)},
	{key: "forwardAnyUDP", server: true, want: strconv.FormatBool(defaults.ForwardAnyUDP)},
	{key: "probeInterval", client: true, want: millis(defaults.ProbeInterval),
		min: millis(defaults.MinProbeInterval), max: millis(defaults.MaxProbeInterval)},
	{key: "log.level", client: true, server: true, want: defaults.LogLevel, allowed: defaults.LogLevels},
	{key: "log.format", client: true, server: true, want: defaults.LogFormat, allowed: defaults.LogFormats},
	{key: "engine.backend", client: true, server: true, want: defaults.Backend, allowed: defaults.Backends},
	{key: "engine.batchSize", client: true, server: true, want: strconv.Itoa(defaults.BatchSize),
		min: strconv.Itoa(defaults.MinBatchSize), max: strconv.Itoa(defaults.MaxBatchSize)},
	{key: "engine.queueLength", client: true, server: true, want: strconv.Itoa(defaults.QueueLength),
		min: strconv.Itoa(defaults.MinQueueLength), max: strconv.Itoa(defaults.MaxQueueLength)},
	{key: "engine.bufferSize", client: true, server: true, want: strconv.Itoa(defaults.BufferSize),
		min: strconv.Itoa(defaults.MinBufferSize), max: strconv.Itoa(defaults.MaxBufferSize)},
	{key: "engine.gso", client: true, server: true, want: strconv.FormatBool(defaults.GSO)},
	{key: "engine.gro", client: true, server: true, want: strconv.FormatBool(defaults.GRO)},
	{key: "engine.dedup", client: true, server: true, want: strconv.FormatBool(defaults.Dedup)},
}

func millis(d time.Duration) string  { return strconv.FormatInt(int64(d/time.Millisecond), 10) }
func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

func lookup(key string) (documented, bool) {
	for _, d := range table {
		if d.key == key {
			return d, true
		}
	}
	return documented{}, false
}

var (
	// defaultRE finds a stated default: "Default: 64", "the default, 10".
	defaultRE = regexp.MustCompile(`(?i)\bdefault[:,]\s*([A-Za-z0-9]+)`)
	rangeRE   = regexp.MustCompile(`\b(\d+) to (\d+)\b`)
	parenRE   = regexp.MustCompile(`\([^()]*\)`)
	listSepRE = regexp.MustCompile(`\s*,\s*|\s+or\s+|\s+and\s+`)
)

// listed returns the values listed at the start of s: "a (remark), b or c.
// More text" gives a, b and c; a lead-in ending in a colon is skipped.
func listed(s string) []string {
	s = parenRE.ReplaceAllString(s, "")
	if i := strings.IndexAny(s, ".;"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	var out []string
	for _, w := range listSepRE.Split(s, -1) {
		if w = strings.Trim(w, " `\"'"); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// sameSet reports what want has that got lacks, and the other way round.
func sameSet(got, want []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for i, g := range got {
		if !slices.Contains(want, g) || slices.Index(got, g) != i {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

// statement is what one place in a document says about one key.
type statement struct {
	where string // file:line
	key   string // the dotted path, with its section
	text  string // the text that documents the key
	line  func(sub string) string
}

// checkStatement checks what st.text says about the key d against
// config/defaults, and reports whether it states the default.
func checkStatement(t *testing.T, st statement, d documented) bool {
	t.Helper()
	found := false
	for _, m := range defaultRE.FindAllStringSubmatch(st.text, -1) {
		found = true
		if m[1] != d.want {
			t.Errorf("%s: %s: documents the default %q, but config/defaults has %q", st.line(m[0]), st.key, m[1], d.want)
		}
	}
	if d.min != "" {
		m := rangeRE.FindStringSubmatch(st.text)
		switch {
		case m == nil && found:
			t.Errorf("%s: %s: documents no range (\"%s to %s\", from config/defaults)", st.where, st.key, d.min, d.max)
		case m != nil && (m[1] != d.min || m[2] != d.max):
			t.Errorf("%s: %s: documents the range %s to %s, but config/defaults has %s to %s", st.line(m[0]), st.key, m[1], m[2], d.min, d.max)
		}
	}
	if d.allowed != nil && found {
		got := listed(st.text)
		if missing, extra := sameSet(got, d.allowed); missing != nil || extra != nil {
			t.Errorf("%s: %s: lists %q, but config/defaults accepts %q (missing %q, extra %q)", st.where, st.key, got, d.allowed, missing, extra)
		}
	}
	return found
}

// lineOf returns file:line of the first of lines from..to-1 containing
// sub, or of line from.
func lineOf(file string, lines []string, from, to int, sub string) string {
	for i := from; i < to && i < len(lines); i++ {
		if strings.Contains(lines[i], sub) {
			return fmt.Sprintf("%s:%d", file, i+1)
		}
	}
	return fmt.Sprintf("%s:%d", file, from+1)
}

// TestSampleDefaults checks the defaults, ranges and accepted values that
// engarde.yml.sample documents, and the values it sets, against
// config/defaults.
func TestSampleDefaults(t *testing.T) {
	data, err := os.ReadFile(sampleFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", sampleFile, err)
	}

	stated := map[string]bool{} // section-relative keys with a stated default
	seen := map[string]bool{}   // section.key of every defaulted key set
	var walk func(section, rel string, n *yaml.Node)
	walk = func(section, rel string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			r := k.Value
			if rel != "" {
				r = rel + "." + k.Value
			}
			full := section + "." + r
			// The comment block right above the key.
			first := k.Line - 1 // 0-based index of the key's line
			for first > 0 && strings.HasPrefix(strings.TrimSpace(lines[first-1]), "#") {
				first--
			}
			comment := strings.Join(lines[first:k.Line-1], "\n")
			st := statement{
				where: fmt.Sprintf("%s:%d", sampleFile, k.Line),
				key:   full,
				text:  strings.Join(strings.Fields(strings.ReplaceAll(comment, "#", "")), " "),
				line:  func(sub string) string { return lineOf(sampleFile, lines, first, k.Line-1, sub) },
			}
			// A match may be split across two comment lines; the joined
			// text finds it, lineOf names the block's first line then.
			d, ok := lookup(r)
			switch {
			case ok && (section == "client" && d.client || section == "server" && d.server):
				seen[full] = true
				if checkStatement(t, st, d) {
					stated[r] = true
				}
				if v.Kind != yaml.ScalarNode || v.Value != d.want {
					t.Errorf("%s:%d: %s: the sample sets %q, but its default (config/defaults) is %q; the sample sets each defaulted key to its default", sampleFile, v.Line, full, v.Value, d.want)
				}
			case v.Kind != yaml.MappingNode && defaultRE.MatchString(st.text):
				m := defaultRE.FindString(st.text)
				t.Errorf("%s: %s: documents a default (%q) that config/defaults does not have", st.line(m), full, m)
			}
			walk(section, r, v)
		}
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s: not a mapping", sampleFile)
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		walk(top.Content[i].Value, "", top.Content[i+1])
	}

	for _, d := range table {
		if !stated[d.key] {
			t.Errorf("%s: %s: no comment above the key states its default (%q, as \"Default: %s\")", sampleFile, d.key, d.want, d.want)
		}
		for _, s := range []struct {
			name string
			has  bool
		}{{"client", d.client}, {"server", d.server}} {
			if s.has && !seen[s.name+"."+d.key] {
				t.Errorf("%s: %s.%s: missing; the sample shows every key", sampleFile, s.name, d.key)
			}
		}
	}
}

// TestReadmeDefaults checks the defaults, ranges and accepted values in
// the README's key table against config/defaults.
func TestReadmeDefaults(t *testing.T) {
	data, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	header := regexp.MustCompile(`^\|\s*key\s*\|\s*role\s*\|\s*meaning\s*\|`)
	start := slices.IndexFunc(lines, header.MatchString)
	if start < 0 {
		t.Fatalf("%s: no key table (a line starting \"| key | role | meaning |\")", readmeFile)
	}
	rowRE := regexp.MustCompile("^\\|\\s*`([A-Za-z]+)`\\s*\\|([^|]*)\\|(.*)\\|\\s*$")
	tickRE := regexp.MustCompile("`([^`]*)`")

	stated := map[string]bool{}
	rows := 0
	for i := start + 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		m := rowRE.FindStringSubmatch(lines[i])
		if m == nil {
			t.Errorf("%s:%d: not a row of the key table (| `key` | role | meaning |): %q", readmeFile, i+1, lines[i])
			continue
		}
		rows++
		rowKey, meaning := m[1], m[3]
		where := fmt.Sprintf("%s:%d", readmeFile, i+1)
		line := func(string) string { return where }
		// Split the meaning at each key in backquotes: the text before the
		// first documents the row's key, the text after each documents
		// that key of the row's section.
		ticks := tickRE.FindAllStringSubmatchIndex(meaning, -1)
		type part struct{ key, text string }
		end := len(meaning)
		if len(ticks) > 0 {
			end = ticks[0][0]
		}
		parts := []part{{rowKey, meaning[:end]}}
		for j, tk := range ticks {
			end := len(meaning)
			if j+1 < len(ticks) {
				end = ticks[j+1][0]
			}
			parts = append(parts, part{rowKey + "." + meaning[tk[2]:tk[3]], meaning[tk[1]:end]})
		}
		for _, p := range parts {
			st := statement{where: where, key: p.key, text: p.text, line: line}
			if d, ok := lookup(p.key); ok {
				if checkStatement(t, st, d) {
					if stated[p.key] {
						t.Errorf("%s: %s: documented twice in the key table", where, p.key)
					}
					stated[p.key] = true
				}
			} else if m := defaultRE.FindString(p.text); m != "" {
				t.Errorf("%s: %s: documents a default (%q) that config/defaults does not have", where, p.key, m)
			}
		}
	}
	if rows == 0 {
		t.Fatalf("%s:%d: the key table has no rows", readmeFile, start+1)
	}
	for _, d := range table {
		if !stated[d.key] {
			t.Errorf("%s: %s: the key table does not state its default (%q, as \"default: %s\" after the key)", readmeFile, d.key, d.want, d.want)
		}
	}
}

// TestDefaultsApplied checks that a file that leaves every key out loads
// as exactly config/defaults' values, and that this test's table names
// every field of config.Log and config.Engine.
func TestDefaultsApplied(t *testing.T) {
	wantLog := config.Log{Level: defaults.LogLevel, Format: defaults.LogFormat}
	wantEngine := config.Engine{
		Backend:     defaults.Backend,
		BatchSize:   defaults.BatchSize,
		QueueLength: defaults.QueueLength,
		BufferSize:  defaults.BufferSize,
		GSO:         defaults.GSO,
		GRO:         defaults.GRO,
		Dedup:       defaults.Dedup,
	}
	// A field added to Log or Engine needs a default here, in
	// config/defaults, the sample and the README.
	for _, s := range []struct {
		prefix string
		typ    reflect.Type
	}{{"log.", reflect.TypeOf(config.Log{})}, {"engine.", reflect.TypeOf(config.Engine{})}} {
		for i := 0; i < s.typ.NumField(); i++ {
			name := s.typ.Field(i).Name
			found := false
			for _, d := range table {
				if strings.EqualFold(d.key, s.prefix+name) {
					found = true
				}
			}
			if !found {
				t.Errorf("config.%s.%s: no default in this test's table; add it to config/defaults, engarde.yml.sample, README.md and the table", s.typ.Name(), name)
			}
		}
	}

	const src = `client:
  listenAddr: "127.0.0.1:59401"
  dstAddr: "192.0.2.1:59501"
server:
  listenAddr: "0.0.0.0:59501"
  dstAddr: "127.0.0.1:59301"
`
	t.Run("client", func(t *testing.T) {
		cfg, err := config.Parse([]byte(src), "engarde.yml", config.RoleClient)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		c := cfg.Client
		if c.WriteTimeout != defaults.WriteTimeout {
			t.Errorf("client.writeTimeout = %v, want defaults.WriteTimeout = %v", c.WriteTimeout, defaults.WriteTimeout)
		}
		if c.Log != wantLog {
			t.Errorf("client.log = %+v, want config/defaults' %+v", c.Log, wantLog)
		}
		if c.Engine != wantEngine {
			t.Errorf("client.engine = %+v, want config/defaults' %+v", c.Engine, wantEngine)
		}
		want := config.Client{ListenAddr: "127.0.0.1:59401", DstAddr: "192.0.2.1:59501", WriteTimeout: defaults.WriteTimeout, ProbeInterval: defaults.ProbeInterval,
			InterfaceLabels: map[string]string{}, Log: wantLog, Engine: wantEngine}
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("client section =\n%+v\nwant\n%+v", *c, want)
		}
	})
	t.Run("server", func(t *testing.T) {
		cfg, err := config.Parse([]byte(src), "engarde.yml", config.RoleServer)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		s := cfg.Server
		if s.ClientTimeout != defaults.ClientTimeout {
			t.Errorf("server.clientTimeout = %v, want defaults.ClientTimeout = %v", s.ClientTimeout, defaults.ClientTimeout)
		}
		if s.WriteTimeout != defaults.WriteTimeout {
			t.Errorf("server.writeTimeout = %v, want defaults.WriteTimeout = %v", s.WriteTimeout, defaults.WriteTimeout)
		}
		if s.Log != wantLog {
			t.Errorf("server.log = %+v, want config/defaults' %+v", s.Log, wantLog)
		}
		if s.Engine != wantEngine {
			t.Errorf("server.engine = %+v, want config/defaults' %+v", s.Engine, wantEngine)
		}
		want := config.Server{ListenAddr: "0.0.0.0:59501", DstAddr: "127.0.0.1:59301", ClientTimeout: defaults.ClientTimeout,
			WriteTimeout: defaults.WriteTimeout, Log: wantLog, Engine: wantEngine}
		if !reflect.DeepEqual(*s, want) {
			t.Errorf("server section =\n%+v\nwant\n%+v", *s, want)
		}
	})
	if !slices.Equal(config.Backends, defaults.Backends) {
		t.Errorf("config.Backends = %q, want defaults.Backends = %q", config.Backends, defaults.Backends)
	}
}

// TestDefaultsConsistent checks config/defaults against itself: each
// default within its range and among the accepted values, and the queue
// length a power of two.
func TestDefaultsConsistent(t *testing.T) {
	for _, r := range []struct {
		name      string
		v, lo, hi int
	}{
		{"BatchSize", defaults.BatchSize, defaults.MinBatchSize, defaults.MaxBatchSize},
		{"QueueLength", defaults.QueueLength, defaults.MinQueueLength, defaults.MaxQueueLength},
		{"BufferSize", defaults.BufferSize, defaults.MinBufferSize, defaults.MaxBufferSize},
	} {
		if r.lo > r.v || r.v > r.hi {
			t.Errorf("defaults.%s = %d, outside Min%[1]s..Max%[1]s = %d..%d", r.name, r.v, r.lo, r.hi)
		}
	}
	for _, q := range []int{defaults.QueueLength, defaults.MinQueueLength, defaults.MaxQueueLength} {
		if q&(q-1) != 0 {
			t.Errorf("queue length %d (config/defaults) is not a power of two", q)
		}
	}
	for _, l := range []struct {
		name string
		v    string
		list []string
	}{
		{"LogLevel", defaults.LogLevel, defaults.LogLevels},
		{"LogFormat", defaults.LogFormat, defaults.LogFormats},
		{"Backend", defaults.Backend, defaults.Backends},
	} {
		if !slices.Contains(l.list, l.v) {
			t.Errorf("defaults.%s = %q, not among %q", l.name, l.v, l.list)
		}
	}
	if defaults.WriteTimeout%time.Millisecond != 0 || defaults.WriteTimeout <= 0 {
		t.Errorf("defaults.WriteTimeout = %v, not a positive whole number of milliseconds (writeTimeout's unit)", defaults.WriteTimeout)
	}
	if defaults.ClientTimeout%time.Second != 0 || defaults.ClientTimeout <= 0 {
		t.Errorf("defaults.ClientTimeout = %v, not a positive whole number of seconds (clientTimeout's unit)", defaults.ClientTimeout)
	}
}
