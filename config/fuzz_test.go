package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/engarde-project/engarde/config/defaults"
	"gopkg.in/yaml.v3"
)

// FuzzParse checks, for both roles, that Parse never panics; that a
// config it accepts passes validation again and survives being written
// out and parsed back; and that a file it rejects gets *Error values whose
// lines lie within the input.
func FuzzParse(f *testing.F) {
	for _, name := range []string{samplePath, "testdata/original.yml", "testdata/scenario1.yml", "testdata/scenario2.yml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(clientHead + "  excludedInterface: [wg0]\n"))
	f.Add([]byte(serverHead + "  clientTimeout: -1\n  engine: {queueLength: 100}\n"))
	f.Add([]byte("client: &c\n  <<: *c\n"))
	f.Add([]byte("client:\n  listenAddr: [\n"))
	f.Add([]byte(serverHead + "  webManager: {password: x, certFile: a.crt, keyFile: a.key, allowedHosts: [a.example, \"[::1]\"]}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, role := range []Role{RoleClient, RoleServer} {
			cfg, err := Parse(data, "fuzz.yml", role)
			if err != nil {
				if cfg != nil {
					t.Fatalf("%v: Parse returned a config with error %v", role, err)
				}
				checkErrorLines(t, err, countBreaks(data))
				continue
			}
			if err := recheck(cfg, role); err != nil {
				t.Fatalf("%v: accepted config fails validation: %v\n%+v", role, err, section(cfg))
			}
			out, err := marshal(cfg)
			if err != nil {
				t.Fatalf("%v: marshal: %v", role, err)
			}
			again, err := Parse(out, "fuzz.yml", role)
			if err != nil {
				t.Fatalf("%v: config written out does not parse: %v\n%s", role, err, out)
			}
			if !reflect.DeepEqual(again, cfg) {
				t.Fatalf("%v: round trip changed the config:\n%+v\n%+v\n%s", role, section(cfg), section(again), out)
			}
		}
	})
}

// countBreaks is an upper bound on the lines of data, counting every
// character YAML may take as a line break, in the bytes as they are and,
// for input with a UTF-16 byte order mark, in the decoded text too.
func countBreaks(data []byte) int {
	s := string(data)
	if len(data) >= 2 && (data[0] == 0xFF && data[1] == 0xFE || data[0] == 0xFE && data[1] == 0xFF) {
		var units []uint16
		for i := 2; i+1 < len(data); i += 2 {
			if data[0] == 0xFF {
				units = append(units, uint16(data[i])|uint16(data[i+1])<<8)
			} else {
				units = append(units, uint16(data[i])<<8|uint16(data[i+1]))
			}
		}
		s += string(utf16.Decode(units))
	}
	return 1 + strings.Count(s, "\n") + strings.Count(s, "\r") +
		strings.Count(s, "\u0085") + strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}

func checkErrorLines(t *testing.T, err error, lines int) {
	t.Helper()
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			checkErrorLines(t, e, lines)
		}
		return
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %q (%T) is not a *Error", err, err)
	}
	if ce.Line < 0 || ce.Line > lines {
		t.Fatalf("error on line %d of a %d-line input: %v", ce.Line, lines, ce)
	}
	if ce.File != "fuzz.yml" || ce.Msg == "" {
		t.Fatalf("error without file or message: %#v", *ce)
	}
}

// recheck validates a loaded config again, from its fields alone.
func recheck(c *Config, role Role) error {
	if c.Role != role || (c.Client != nil) != (role == RoleClient) || (c.Server != nil) != (role == RoleServer) {
		return fmt.Errorf("role %v with client %v and server %v", c.Role, c.Client != nil, c.Server != nil)
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	addr := func(name, a string, needHost, required bool) {
		if a == "" {
			check(!required, "%s is empty", name)
			return
		}
		if err := checkAddr(a, needHost); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	common := func(listen, dst string, write time.Duration, w WebManager, l Log, e Engine) {
		addr("listenAddr", listen, false, true)
		addr("dstAddr", dst, true, true)
		check(write == -1 || write > 0, "writeTimeout %v", write)
		addr("webManager.listenAddr", w.ListenAddr, false, false)
		check((w.Username == "") == (w.Password == ""), "half a login: username %q, password %q", w.Username, w.Password)
		check((w.CertFile == "") == (w.KeyFile == ""), "half a TLS setup: certFile %q, keyFile %q", w.CertFile, w.KeyFile)
		for _, h := range w.AllowedHosts {
			check(h != "" && checkHost(strings.Trim(h, "[]")) == nil, "allowed host %q", h)
		}
		check(contains(defaults.LogLevels, l.Level), "log level %q", l.Level)
		check(contains(defaults.LogFormats, l.Format), "log format %q", l.Format)
		check(contains(Backends, e.Backend), "backend %q", e.Backend)
		check(e.BatchSize >= defaults.MinBatchSize && e.BatchSize <= defaults.MaxBatchSize, "batchSize %d", e.BatchSize)
		check(e.QueueLength >= defaults.MinQueueLength && e.QueueLength <= defaults.MaxQueueLength && e.QueueLength&(e.QueueLength-1) == 0, "queueLength %d", e.QueueLength)
		check(e.BufferSize >= defaults.MinBufferSize && e.BufferSize <= defaults.MaxBufferSize, "bufferSize %d", e.BufferSize)
	}
	if s := c.Server; s != nil {
		common(s.ListenAddr, s.DstAddr, s.WriteTimeout, s.WebManager, s.Log, s.Engine)
		check(s.ClientTimeout > 0, "clientTimeout %v", s.ClientTimeout)
	}
	if cl := c.Client; cl != nil {
		common(cl.ListenAddr, cl.DstAddr, cl.WriteTimeout, cl.WebManager, cl.Log, cl.Engine)
		for _, n := range cl.ExcludedInterfaces {
			check(n != "", "empty excluded interface")
		}
		check(cl.InterfaceLabels != nil, "nil InterfaceLabels")
		for n := range cl.InterfaceLabels {
			check(n != "", "empty labelled interface")
		}
		seen := map[string]bool{}
		for _, o := range cl.DstOverrides {
			check(o.IfName != "" && !seen[o.IfName], "override interface %q empty or repeated", o.IfName)
			seen[o.IfName] = true
			addr("dstOverrides.dstAddr", o.DstAddr, true, true)
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// marshal writes a config back out in the file format.
func marshal(c *Config) ([]byte, error) {
	millis := func(d time.Duration) int64 {
		if d < 0 {
			return -1
		}
		return int64(d / time.Millisecond)
	}
	web := func(w WebManager) map[string]any {
		m := map[string]any{"listenAddr": w.ListenAddr, "username": w.Username, "password": w.Password,
			"certFile": w.CertFile, "keyFile": w.KeyFile}
		if w.AllowedHosts != nil {
			m["allowedHosts"] = w.AllowedHosts
		}
		return m
	}
	log := func(l Log) map[string]any { return map[string]any{"level": l.Level, "format": l.Format} }
	engine := func(e Engine) map[string]any {
		return map[string]any{"backend": e.Backend, "batchSize": e.BatchSize, "queueLength": e.QueueLength,
			"bufferSize": e.BufferSize, "gso": e.GSO, "gro": e.GRO}
	}
	doc := map[string]any{}
	if s := c.Server; s != nil {
		doc["server"] = map[string]any{
			"description": s.Description, "listenAddr": s.ListenAddr, "dstAddr": s.DstAddr,
			"clientTimeout": int64(s.ClientTimeout / time.Second), "writeTimeout": millis(s.WriteTimeout),
			"webManager": web(s.WebManager), "log": log(s.Log), "engine": engine(s.Engine),
		}
	}
	if cl := c.Client; cl != nil {
		m := map[string]any{
			"description": cl.Description, "listenAddr": cl.ListenAddr, "dstAddr": cl.DstAddr,
			"writeTimeout": millis(cl.WriteTimeout), "interfaceLabels": cl.InterfaceLabels, "fwmark": cl.FwMark,
			"webManager": web(cl.WebManager), "log": log(cl.Log), "engine": engine(cl.Engine),
		}
		if cl.ExcludedInterfaces != nil {
			m["excludedInterfaces"] = cl.ExcludedInterfaces
		}
		if cl.DstOverrides != nil {
			var o []map[string]string
			for _, d := range cl.DstOverrides {
				o = append(o, map[string]string{"ifName": d.IfName, "dstAddr": d.DstAddr})
			}
			m["dstOverrides"] = o
		}
		doc["client"] = m
	}
	return yaml.Marshal(doc)
}

// TestFuzzCorpusFiles checks that the committed seed corpus is present, so
// that plain go test runs it.
func TestFuzzCorpusFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus in testdata/fuzz/FuzzParse (%v)", err)
	}
}
