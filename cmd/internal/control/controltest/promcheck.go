package controltest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The files under contrib/ whose expressions name metrics, relative to
// the contrib directory.
const (
	RulesFile     = "prometheus/engarde.rules.yml"
	RulesTestFile = "prometheus/engarde.rules.test.yml"
	DashboardFile = "grafana/engarde.json"
)

// Served is what a scrape serves: per family (and the _sum, _count and
// _bucket of summaries and histograms), the label names and, per label,
// the values seen.
type Served map[string]map[string]map[string]bool

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)`)
)

// Add adds a scrape in the text format to s.
func (s Served) Add(body string) error {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			s.family(name)
			if typ == "summary" || typ == "histogram" {
				s.family(name + "_sum")
				s.family(name + "_count")
			}
			if typ == "histogram" {
				s.family(name + "_bucket")
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			return fmt.Errorf("not a sample: %q", line)
		}
		fam := s.family(m[1])
		for rest := m[3]; rest != ""; {
			lm := labelPair.FindStringSubmatch(rest)
			if lm == nil {
				return fmt.Errorf("bad labels %q", m[3])
			}
			if fam[lm[1]] == nil {
				fam[lm[1]] = map[string]bool{}
			}
			fam[lm[1]][lm[2]] = true
			rest = rest[len(lm[0]):]
		}
	}
	return sc.Err()
}

func (s Served) family(name string) map[string]map[string]bool {
	if s[name] == nil {
		s[name] = map[string]map[string]bool{}
	}
	return s[name]
}

var (
	// quoted is a PromQL string (label values, regular expressions).
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// selector is a metric name of ours (engarde's, the process's, Go's)
	// with its optional label matchers.
	selector = regexp.MustCompile(`\b((?:engarde|process|go)_[a-zA-Z0-9_]*)\b(\{[^}]*\})?`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)
)

// Names returns the metric names of ours that a PromQL expression uses.
func Names(expr string) []string {
	var out []string
	for _, loc := range selector.FindAllStringSubmatchIndex(blankStrings(expr), -1) {
		out = append(out, expr[loc[2]:loc[3]])
	}
	return out
}

// blankStrings replaces the inside of every string of expr with x, so
// that a label value or a regular expression never reads as a name, and
// every offset stays the same.
func blankStrings(expr string) string {
	return quoted.ReplaceAllStringFunc(expr, func(q string) string { return q[:1] + strings.Repeat("x", len(q)-2) + q[len(q)-1:] })
}

// CheckExpr returns what is wrong with the metrics a PromQL expression
// names, against what is served: a name not served, a label matcher on a
// label its family lacks, an equality matcher on a value no series has.
// The labels Prometheus adds, instance and job, are not checked.
func CheckExpr(expr string, s Served) []string {
	var bad []string
	for _, loc := range selector.FindAllStringSubmatchIndex(blankStrings(expr), -1) {
		name := expr[loc[2]:loc[3]]
		fam, ok := s[name]
		if !ok {
			bad = append(bad, name+" is not served")
			continue
		}
		if loc[4] < 0 {
			continue
		}
		for _, m := range matcher.FindAllStringSubmatch(expr[loc[4]:loc[5]], -1) {
			label, op, value := m[1], m[2], strings.Trim(m[3], `"`)
			if label == "instance" || label == "job" {
				continue
			}
			values, ok := fam[label]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s has no label %s", name, label))
			case op == "=" && !values[value]:
				bad = append(bad, fmt.Sprintf("%s{%s=%q} matches no series (values served: %s)", name, label, value, strings.Join(sortedKeys(values), ", ")))
			}
		}
	}
	return bad
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ContribExprs returns every PromQL expression of the alert rules and the
// dashboard under dir (contrib/), keyed by file and rule or panel: the
// rules' expr, the panels' targets' expr, and the variables' queries. A
// file that does not parse is an error.
func ContribExprs(dir string) (map[string]string, error) {
	out := map[string]string{}
	rulesPath := filepath.Join(dir, RulesFile)
	data, err := os.ReadFile(rulesPath)
	if err != nil {
		return nil, err
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		return nil, fmt.Errorf("%s: %w", rulesPath, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[fmt.Sprintf("%s: %s %s%s", RulesFile, g.Name, r.Alert, r.Record)] = r.Expr
		}
	}

	dashPath := filepath.Join(dir, DashboardFile)
	if data, err = os.ReadFile(dashPath); err != nil {
		return nil, err
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		return nil, fmt.Errorf("%s: %w", dashPath, err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				path += " / " + title
			} else if name, ok := v["name"].(string); ok {
				path += " / $" + name
			}
			for k, x := range v {
				// A variable's query is a string or {"query": ...}; a
				// datasource variable's "query" is a plugin name.
				if s, ok := x.(string); ok && (k == "expr" || k == "definition" || k == "query" && strings.Contains(path, "$") && v["type"] != "datasource") {
					out[fmt.Sprintf("%s:%s %s", DashboardFile, path, k)] = s
					continue
				}
				walk(path, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("", dash)
	return out, nil
}
