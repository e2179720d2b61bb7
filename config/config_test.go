package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"gopkg.in/yaml.v3"
)

const samplePath = "../engarde.yml.sample"

// base sections: a valid head of three lines, so that text appended to it
// starts on line 4.
const (
	clientHead = "client:\n  listenAddr: \"127.0.0.1:59401\"\n  dstAddr: \"192.0.2.1:59501\"\n"
	serverHead = "server:\n  listenAddr: \"0.0.0.0:59501\"\n  dstAddr: \"127.0.0.1:59301\"\n"
)

func mustParse(t *testing.T, src string, role Role) *Config {
	t.Helper()
	cfg, err := Parse([]byte(src), "engarde.yml", role)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// configErrors returns the *Error values in err, in order.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %q (%T) is not a *Error", err, err)
		}
		out = append(out, ce)
	}
	walk(err)
	return out
}

func TestRoleString(t *testing.T) {
	for _, tt := range []struct {
		role Role
		want string
	}{
		{RoleClient, "client"},
		{RoleServer, "server"},
		{Role(7), "Role(7)"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.role.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{"engarde.yml", 7, "client.excludedInterface", `unknown key "excludedInterface"`}, `engarde.yml:7: client.excludedInterface: unknown key "excludedInterface"`},
		{"no line", Error{"engarde.yml", 0, "client", "no client section"}, "engarde.yml: client: no client section"},
		{"no key", Error{"engarde.yml", 5, "", "invalid YAML: did not find expected key"}, "engarde.yml:5: invalid YAML: did not find expected key"},
		{"no line no key", Error{"engarde.yml", 0, "", "no client section"}, "engarde.yml: no client section"},
		{"no file", Error{"", 3, "server.dstAddr", "must not be empty"}, "line 3: server.dstAddr: must not be empty"},
		{"nothing", Error{"", 0, "", "no server section"}, "no server section"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSample(t *testing.T) {
	engine := Engine{Backend: "auto", BatchSize: 64, QueueLength: 1024, BufferSize: 65536, GSO: true, GRO: true, Dedup: true}
	// The sample keeps the web manager on this machine, without a login.
	web := WebManager{ListenAddr: "127.0.0.1:9001"}
	for _, tt := range []struct {
		role Role
		want *Config
	}{
		{RoleClient, &Config{File: samplePath, Role: RoleClient, Client: &Client{
			Description:   "My engarde-client instance",
			ListenAddr:    "127.0.0.1:59401",
			DstAddr:       "203.0.113.10:59501",
			WriteTimeout:  10 * time.Millisecond,
			ProbeInterval: 250 * time.Millisecond,
			ExcludedInterfaces: []string{"wg0", "Local Area Connection 2", "VirtualBox Host-Only Network",
				"Bluetooth Network Connection", "Loopback Pseudo-Interface 1"},
			InterfaceLabels: map[string]string{"eth0": "Fiber", "wlan0": "Wi-Fi"},
			DstOverrides:    []DstOverride{{IfName: "Local Area Connection 4", DstAddr: "198.51.100.20:59501"}},
			WebManager:      web,
			Log:             Log{Level: "info", Format: "auto"},
			Engine:          engine,
		}}},
		{RoleServer, &Config{File: samplePath, Role: RoleServer, Server: &Server{
			Description:   "My engarde-server instance",
			ListenAddr:    "0.0.0.0:59501",
			DstAddr:       "127.0.0.1:59301",
			ClientTimeout: 30 * time.Second,
			WriteTimeout:  10 * time.Millisecond,
			WebManager:    web,
			Log:           Log{Level: "info", Format: "auto"},
			Engine:        engine,
		}}},
	} {
		t.Run(tt.role.String(), func(t *testing.T) {
			cfg, err := Load(samplePath, tt.role)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", section(cfg), section(tt.want))
			}
		})
	}
}

func section(c *Config) any {
	if c.Client != nil {
		return *c.Client
	}
	return *c.Server
}

// TestSampleCoversEveryKey checks that engarde.yml.sample shows every key
// the decoder knows and no other, so the sample stays the reference. The
// list form of interfaceLabels appears only in a comment.
// sampleUncommented returns the sample with its commented-out webManager
// keys ("# username: ...") set.
func sampleUncommented(t *testing.T) []byte {
	data, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\s*)# (` + strings.Join(webManagerKeys, "|") + `): (.+)$`)
	return re.ReplaceAll(data, []byte("$1$2: $3"))
}

// TestSampleUncommented checks that the webManager keys the sample shows
// commented out load as written.
func TestSampleUncommented(t *testing.T) {
	for _, role := range []Role{RoleClient, RoleServer} {
		cfg, err := Parse(sampleUncommented(t), samplePath, role)
		if err != nil {
			t.Fatalf("%s with its webManager keys uncommented: %v", role, err)
		}
		var w WebManager
		if role == RoleServer {
			w = cfg.Server.WebManager
		} else {
			w = cfg.Client.WebManager
		}
		want := WebManager{ListenAddr: "127.0.0.1:9001", Username: "engarde", Password: "a long secret",
			AllowedHosts: []string{"engarde.example.net"}, CertFile: "/etc/engarde/web.crt", KeyFile: "/etc/engarde/web.key",
			MetricsListenAddr: "127.0.0.1:9002"}
		if !reflect.DeepEqual(w, want) {
			t.Errorf("%s: webManager = %+v, want %+v", role, w, want)
		}
	}
}

func TestSampleCoversEveryKey(t *testing.T) {
	data := sampleUncommented(t)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	var walk func(path string, n *yaml.Node)
	walk = func(path string, n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(path, c)
			}
		case yaml.MappingNode:
			if path == "client.interfaceLabels" {
				return
			}
			for i := 0; i < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				got[p] = true
				walk(p, n.Content[i+1])
			}
		}
	}
	walk("", &doc)

	want := map[string]bool{}
	add := func(prefix string, keys []string) {
		for _, k := range keys {
			want[prefix+k] = true
		}
	}
	add("", topKeys)
	add("client.", clientKeys)
	add("server.", serverKeys)
	add("client.dstOverrides.", overrideKeys)
	for _, s := range []string{"client.", "server."} {
		add(s+"webManager.", webManagerKeys)
		add(s+"log.", logKeys)
		add(s+"engine.", engineKeys)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sample keys differ from known keys:\nonly in sample: %v\nnot in sample: %v", diff(got, want), diff(want, got))
	}
}

func diff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func TestOriginal(t *testing.T) {
	web := WebManager{ListenAddr: "0.0.0.0:9001", Username: "engarde", Password: "engarde"}
	file := filepath.Join("testdata", "original.yml")
	for _, tt := range []struct {
		role Role
		want *Config
	}{
		{RoleClient, &Config{File: file, Role: RoleClient, Client: &Client{
			Description:   "My engarde-client instance",
			ListenAddr:    "127.0.0.1:59401",
			DstAddr:       "203.0.113.10:59501",
			WriteTimeout:  10 * time.Millisecond,
			ProbeInterval: 250 * time.Millisecond,
			ExcludedInterfaces: []string{"Local Area Connection 2", "VirtualBox Host-Only Network",
				"Bluetooth Network Connection", "Loopback Pseudo-Interface 1"},
			InterfaceLabels: map[string]string{"Local Area Connection": "Office fiber", "Wi-Fi": "Backup Wi-Fi"},
			DstOverrides:    []DstOverride{{IfName: "Local Area Connection 4", DstAddr: "198.51.100.20:59501"}},
			WebManager:      web,
			Log:             defaultLog(),
			Engine:          defaultEngine(),
		}}},
		{RoleServer, &Config{File: file, Role: RoleServer, Server: &Server{
			Description:   "My engarde-server instance",
			ListenAddr:    "0.0.0.0:59501",
			DstAddr:       "127.0.0.1:59301",
			ClientTimeout: 30 * time.Second,
			WriteTimeout:  10 * time.Millisecond,
			WebManager:    web,
			Log:           defaultLog(),
			Engine:        defaultEngine(),
		}}},
	} {
		t.Run(tt.role.String(), func(t *testing.T) {
			cfg, err := Load(file, tt.role)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg, tt.want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", section(cfg), section(tt.want))
			}
		})
	}
}

func TestReadmeScenarios(t *testing.T) {
	server := &Server{
		ListenAddr:    "0.0.0.0:59402",
		DstAddr:       "127.0.0.1:59301",
		ClientTimeout: 30 * time.Second,
		WriteTimeout:  10 * time.Millisecond,
		Log:           defaultLog(),
		Engine:        defaultEngine(),
	}
	client := func(dst string, excluded []string, overrides []DstOverride) *Client {
		return &Client{
			ListenAddr:         "127.0.0.1:59401",
			DstAddr:            dst,
			WriteTimeout:       10 * time.Millisecond,
			ProbeInterval:      250 * time.Millisecond,
			ExcludedInterfaces: excluded,
			InterfaceLabels:    map[string]string{},
			DstOverrides:       overrides,
			Log:                defaultLog(),
			Engine:             defaultEngine(),
		}
	}
	for _, tt := range []struct {
		name   string
		file   string
		client *Client
	}{
		{"multiple connections on one peer", "scenario1.yml", client("198.51.100.32:59402", []string{"eth3", "wg0"}, nil)},
		{"multiple connections between two peers", "scenario2.yml", client("192.168.1.2:59402", nil,
			[]DstOverride{{IfName: "eth1", DstAddr: "192.168.2.2:59402"}})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join("testdata", tt.file)
			c, err := Load(file, RoleClient)
			if err != nil {
				t.Fatalf("Load client: %v", err)
			}
			if !reflect.DeepEqual(c.Client, tt.client) {
				t.Errorf("client =\n%+v\nwant\n%+v", *c.Client, *tt.client)
			}
			if c.Server != nil {
				t.Errorf("client load set Server")
			}
			s, err := Load(file, RoleServer)
			if err != nil {
				t.Fatalf("Load server: %v", err)
			}
			if !reflect.DeepEqual(s.Server, server) {
				t.Errorf("server =\n%+v\nwant\n%+v", *s.Server, *server)
			}
			if s.Client != nil {
				t.Errorf("server load set Client")
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yml")
	_, err := Load(path, RoleClient)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load = %v, want an error wrapping fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

func TestParseInvalidRole(t *testing.T) {
	if _, err := Parse([]byte(clientHead), "engarde.yml", Role(2)); err == nil {
		t.Fatal("Parse with Role(2) succeeded")
	}
}

func TestDefaults(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		c := mustParse(t, clientHead, RoleClient).Client
		want := &Client{
			ListenAddr:      "127.0.0.1:59401",
			DstAddr:         "192.0.2.1:59501",
			WriteTimeout:    10 * time.Millisecond,
			ProbeInterval:   250 * time.Millisecond,
			InterfaceLabels: map[string]string{},
			Log:             Log{Level: "info", Format: "auto"},
			Engine:          Engine{Backend: "auto", BatchSize: 64, QueueLength: 1024, BufferSize: 65536, GSO: true, GRO: true, Dedup: true},
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got\n%+v\nwant\n%+v", *c, *want)
		}
	})
	t.Run("server", func(t *testing.T) {
		s := mustParse(t, serverHead, RoleServer).Server
		want := &Server{
			ListenAddr:    "0.0.0.0:59501",
			DstAddr:       "127.0.0.1:59301",
			ClientTimeout: 30 * time.Second,
			WriteTimeout:  10 * time.Millisecond,
			Log:           Log{Level: "info", Format: "auto"},
			Engine:        Engine{Backend: "auto", BatchSize: 64, QueueLength: 1024, BufferSize: 65536, GSO: true, GRO: true, Dedup: true},
		}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("got\n%+v\nwant\n%+v", *s, *want)
		}
	})
	// Null values mean the default or empty, as in the original.
	t.Run("null values", func(t *testing.T) {
		c := mustParse(t, clientHead+`  description:
  writeTimeout:
  excludedInterfaces:
  interfaceLabels:
  dstOverrides: []
  webManager:
  fwmark:
  log: {level: , format: ~}
  engine:
    backend:
    batchSize: null
    gso:
`, RoleClient).Client
		if c.WriteTimeout != 10*time.Millisecond || c.ExcludedInterfaces != nil || c.DstOverrides != nil ||
			c.InterfaceLabels == nil || len(c.InterfaceLabels) != 0 || c.Log != defaultLog() || c.Engine != defaultEngine() {
			t.Errorf("null values did not give defaults: %+v", *c)
		}
	})
	t.Run("null sections", func(t *testing.T) {
		s := mustParse(t, serverHead+"  webManager:\n  log:\n  engine:\n  clientTimeout:\n", RoleServer).Server
		if s.ClientTimeout != 30*time.Second || s.Log != defaultLog() || s.Engine != defaultEngine() || !reflect.DeepEqual(s.WebManager, WebManager{}) {
			t.Errorf("null sections did not give defaults: %+v", *s)
		}
	})
}

func TestTimeouts(t *testing.T) {
	for _, tt := range []struct {
		src    string
		client time.Duration // write timeout
		server time.Duration // client timeout
	}{
		{"", 10 * time.Millisecond, 30 * time.Second},
		{"  writeTimeout: 0\n  clientTimeout: 0\n", 10 * time.Millisecond, 30 * time.Second},
		{"  writeTimeout: 250\n  clientTimeout: 5\n", 250 * time.Millisecond, 5 * time.Second},
		{"  writeTimeout: -5\n  clientTimeout: 120\n", -1, 120 * time.Second},
		{"  writeTimeout: -1\n", -1, 30 * time.Second},
	} {
		t.Run(strings.TrimSpace(tt.src), func(t *testing.T) {
			s := mustParse(t, serverHead+tt.src, RoleServer).Server
			if s.WriteTimeout != tt.client || s.ClientTimeout != tt.server {
				t.Errorf("writeTimeout %v clientTimeout %v, want %v %v", s.WriteTimeout, s.ClientTimeout, tt.client, tt.server)
			}
			client := strings.ReplaceAll(tt.src, "  clientTimeout", "  # clientTimeout")
			c := mustParse(t, clientHead+client, RoleClient).Client
			if c.WriteTimeout != tt.client {
				t.Errorf("client writeTimeout %v, want %v", c.WriteTimeout, tt.client)
			}
		})
	}
}

func TestQueueLengthRounding(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"16", 16}, {"17", 32}, {"100", 128}, {"1000", 1024}, {"1024", 1024},
		{"1025", 2048}, {"65535", 65536}, {"65536", 65536}, {"0x100", 256},
	} {
		t.Run(tt.in, func(t *testing.T) {
			e := mustParse(t, clientHead+"  engine:\n    queueLength: "+tt.in+"\n", RoleClient).Client.Engine
			if got := e.QueueLength; got != tt.want {
				t.Errorf("queueLength %s -> %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, tt := range []struct {
		name  string
		src   string
		check func(c *Client) bool
	}{
		{"fwmark decimal", "  fwmark: 42\n", func(c *Client) bool { return c.FwMark == 42 }},
		{"fwmark hex", "  fwmark: 0x1234\n", func(c *Client) bool { return c.FwMark == 0x1234 }},
		{"fwmark max", "  fwmark: 0xFFFFFFFF\n", func(c *Client) bool { return c.FwMark == 0xFFFFFFFF }},
		{"labels map", "  interfaceLabels: {eth0: Fiber, \"Local Area Connection 2\": \"LTE\"}\n", func(c *Client) bool {
			return reflect.DeepEqual(c.InterfaceLabels, map[string]string{"eth0": "Fiber", "Local Area Connection 2": "LTE"})
		}},
		{"labels list", "  interfaceLabels:\n    - ifName: eth0\n      label: Fiber\n    - {ifName: \"Local Area Connection 2\", label: LTE}\n", func(c *Client) bool {
			return reflect.DeepEqual(c.InterfaceLabels, map[string]string{"eth0": "Fiber", "Local Area Connection 2": "LTE"})
		}},
		{"labels list empty", "  interfaceLabels: []\n", func(c *Client) bool { return c.InterfaceLabels != nil && len(c.InterfaceLabels) == 0 }},
		// The original's YAML library took any scalar as a string.
		{"scalar strings", "  description: 42\n  webManager: {username: true, password: 1234}\n", func(c *Client) bool {
			return c.Description == "42" && c.WebManager.Username == "true" && c.WebManager.Password == "1234"
		}},
		{"log case-insensitive", "  log: {level: DEBUG, format: Json}\n", func(c *Client) bool { return c.Log == Log{Level: "debug", Format: "json"} }},
		{"engine", "  engine: {backend: mmsg, batchSize: 1, queueLength: 16, bufferSize: 65536, gso: false, gro: yes, dedup: false}\n", func(c *Client) bool {
			return c.Engine == Engine{Backend: "mmsg", BatchSize: 1, QueueLength: 16, BufferSize: 65536, GSO: false, GRO: true, Dedup: false}
		}},
		{"engine max", "  engine: {backend: std, batchSize: 1024, queueLength: 65536, bufferSize: 1500}\n", func(c *Client) bool {
			return c.Engine == Engine{Backend: "std", BatchSize: 1024, QueueLength: 65536, BufferSize: 1500, GSO: true, GRO: true, Dedup: true}
		}},
		{"listen on all addresses", "  webManager: {listenAddr: \":9001\"}\n", func(c *Client) bool { return c.WebManager.ListenAddr == ":9001" }},
		{"webManager disabled", "  webManager: {listenAddr: \"\"}\n", func(c *Client) bool { return c.WebManager.ListenAddr == "" }},
		{"anchors and merge keys", "  webManager: &wm {listenAddr: \"[::1]:9001\", username: a, password: b}\n  dstOverrides:\n    - &o {ifName: eth1, dstAddr: \"vpn.example.com:59501\"}\n    - <<: *o\n      ifName: eth2\n", func(c *Client) bool {
			return c.WebManager.ListenAddr == "[::1]:9001" && reflect.DeepEqual(c.DstOverrides, []DstOverride{
				{IfName: "eth1", DstAddr: "vpn.example.com:59501"}, {IfName: "eth2", DstAddr: "vpn.example.com:59501"}})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, clientHead+tt.src, RoleClient).Client
			if !tt.check(c) {
				t.Errorf("unexpected result: %+v", *c)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	for _, tt := range []struct {
		addr     string
		needHost bool
		ok       bool
	}{
		{"127.0.0.1:59401", true, true},
		{"[2001:db8::1]:59501", true, true},
		{"[fe80::1%eth0]:59501", true, true},
		{"vpn.example.com:59501", true, true},
		{"vpn.example.com.:59501", true, true},
		{"localhost:1", true, true},
		{"my_host:65535", true, true},
		{":59402", false, true},
		{":59402", true, false},
		{"1.2.3.4", true, false},
		{"1.2.3.4:", true, false},
		{"1.2.3.4:0", true, false},
		{"1.2.3.4:99999", true, false},
		{"1.2.3.4:http", true, false},
		{"1.2.3.4:-1", true, false},
		{"[fe80::1", true, false},
		{"2001:db8::1:59501", true, false},
		{"[2001:db8::zz]:1", true, false},
		{"192.0.2.300:1", true, false},
		{"exa mple.com:1", true, false},
		{"-bad.example.com:1", true, false},
		{"example..com:1", true, false},
		{strings.Repeat("a", 64) + ".com:1", true, false},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			err := checkAddr(tt.addr, tt.needHost)
			if (err == nil) != tt.ok {
				t.Fatalf("checkAddr(%q, %v) = %v, want ok %v", tt.addr, tt.needHost, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), quote(tt.addr)) {
				t.Errorf("error %q does not quote the address", err)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	for _, tt := range []struct {
		name string
		want string
	}{
		{"listenaddr", "listenAddr"},
		{"LISTENADDR", "listenAddr"},
		{"excludedInterface", "excludedInterfaces"},
		{"excludedInterfacs", "excludedInterfaces"},
		{"dstAdr", "dstAddr"},
		{"dstOverride", "dstOverrides"},
		{"writeTimout", "writeTimeout"},
		{"webmanager", "webManager"},
		{"fwMark", "fwmark"},
		{"descripton", "description"},
		{"interfaceLabel", "interfaceLabels"},
		{"colour", ""},
		{"x", ""},
		{"", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := suggest(tt.name, clientKeys); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

// TestOtherSectionIgnored checks that a program never looks inside the
// other program's section.
func TestOtherSectionIgnored(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		role Role
	}{
		{"server only", serverHead, RoleServer},
		{"client only", clientHead, RoleClient},
		{"garbage client", "client:\n  bogus: [1, 2]\n  listenAddr: 42\n  excludedInterface: wg0\n  dstAddr: {a: b}\n" + serverHead, RoleServer},
		{"client is a string", "client: hello\n" + serverHead, RoleServer},
		{"client is a list", "client: [1, 2, 3]\n" + serverHead, RoleServer},
		{"client is null", "client:\n" + serverHead, RoleServer},
		{"garbage server", clientHead + "server:\n  fwmark: -1\n  clientTimeout: -30\n  listenAddr: nope\n", RoleClient},
		{"anchor in the other section", "server:\n  webManager: &wm {listenAddr: \":9001\"}\n  unknownKey: 1\n" + clientHead + "  webManager: *wm\n", RoleClient},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.src, tt.role)
			if cfg.Role != tt.role || (cfg.Client != nil) != (tt.role == RoleClient) || (cfg.Server != nil) != (tt.role == RoleServer) {
				t.Errorf("got Role %v Client %v Server %v", cfg.Role, cfg.Client, cfg.Server)
			}
		})
	}
}

// utf16LE encodes s as UTF-16 with a little-endian byte order mark.
func utf16LE(s string) string {
	b := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

// errCase is a file with exactly one problem, and where it must be found.
type errCase struct {
	name string
	role Role
	src  string
	line int
	key  string
	msg  string // substring of Msg
}

func TestErrors(t *testing.T) {
	for _, tt := range []errCase{
		// YAML syntax.
		{"syntax unclosed list", RoleClient, "client:\n  listenAddr: [\n", 2, "", "invalid YAML: did not find expected node content"},
		{"syntax tab", RoleClient, "client:\n\tlistenAddr: x\n", 2, "", "invalid YAML: found character that cannot start any token"},
		{"syntax bad indent", RoleClient, clientHead + "  description: a\n webManager: {}\n", 4, "", "invalid YAML: did not find expected key"},
		{"syntax unknown anchor", RoleClient, clientHead + "  webManager: *nope\n", 0, "", "unknown anchor 'nope'"},

		// Sections.
		{"no section", RoleClient, serverHead, 0, "", "no client section"},
		{"no server section", RoleServer, clientHead, 0, "", "no server section"},
		{"empty file", RoleServer, "", 0, "", "no server section"},
		{"only comments", RoleClient, "# nothing here\n", 0, "", "no client section"},
		{"top level not a mapping", RoleClient, "- client\n", 1, "", "expected a mapping with a client section, got a list"},
		{"section not a mapping", RoleClient, "client: [a, b]\n", 1, "client", "expected a mapping of keys to values, got a list"},
		{"unknown top-level key", RoleServer, serverHead + "sever:\n  a: 1\n", 4, "sever", `unknown key "sever" (did you mean "server"?)`},
		{"unknown top-level key no suggestion", RoleClient, clientHead + "version: 2\n", 4, "version", `unknown key "version"`},
		{"duplicate section", RoleClient, clientHead + "client:\n  description: x\n", 4, "client", `duplicate key "client" (first set on line 1)`},

		// Unknown keys.
		{"typo excludedInterfaces", RoleClient, clientHead + "  excludedInterface:\n    - wg0\n", 4, "client.excludedInterface", `unknown key "excludedInterface" (did you mean "excludedInterfaces"?)`},
		{"wrong case", RoleClient, clientHead + "  writetimeout: 5\n", 4, "client.writetimeout", `unknown key "writetimeout" (did you mean "writeTimeout"?)`},
		{"unknown no suggestion", RoleClient, clientHead + "  colour: blue\n", 4, "client.colour", `unknown key "colour"`},
		{"fwmark in server", RoleServer, serverHead + "  fwmark: 1\n", 4, "server.fwmark", `unknown key "fwmark"`},
		{"clientTimeout in client", RoleClient, clientHead + "  clientTimeout: 1\n", 4, "client.clientTimeout", `unknown key "clientTimeout"`},
		{"unknown in webManager", RoleServer, serverHead + "  webManager:\n    listenAddr: \":9001\"\n    usename: x\n", 6, "server.webManager.usename", `(did you mean "username"?)`},
		{"unknown in dstOverrides", RoleClient, clientHead + "  dstOverrides:\n    - ifName: eth1\n      dstAddr: \"192.0.2.2:1\"\n    - ifname: eth2\n      dstAddr: \"192.0.2.3:1\"\n", 7, "client.dstOverrides[1].ifname", `(did you mean "ifName"?)`},
		{"unknown in log", RoleClient, clientHead + "  log:\n    lvl: debug\n", 5, "client.log.lvl", `(did you mean "level"?)`},
		{"unknown in engine", RoleServer, serverHead + "  engine:\n    batchsize: 8\n", 5, "server.engine.batchsize", `(did you mean "batchSize"?)`},
		{"unknown in labels list", RoleClient, clientHead + "  interfaceLabels:\n    - ifName: eth0\n      lable: x\n", 6, "client.interfaceLabels[0].lable", `(did you mean "label"?)`},
		{"odd key name", RoleClient, clientHead + "  \"listen addr\": x\n", 4, `client["listen addr"]`, `unknown key "listen addr"`},

		// Duplicates.
		{"duplicate key", RoleClient, clientHead + "  listenAddr: \"127.0.0.1:59402\"\n", 4, "client.listenAddr", `duplicate key "listenAddr" (first set on line 2)`},
		{"duplicate nested key", RoleServer, serverHead + "  engine:\n    gso: true\n    gso: false\n", 6, "server.engine.gso", `duplicate key "gso" (first set on line 5)`},
		{"duplicate label", RoleClient, clientHead + "  interfaceLabels:\n    eth0: a\n    eth0: b\n", 6, "client.interfaceLabels.eth0", `duplicate key "eth0"`},

		// Types.
		{"list for string", RoleClient, clientHead + "  description: [a, b]\n", 4, "client.description", "expected a string, got a list"},
		{"mapping for address", RoleServer, "server:\n  listenAddr: {host: a}\n  dstAddr: \"127.0.0.1:1\"\n", 2, "server.listenAddr", "expected a string, got a mapping"},
		{"word for writeTimeout", RoleClient, clientHead + "  writeTimeout: fast\n", 4, "client.writeTimeout", `expected an integer number of milliseconds, got the string "fast"`},
		{"fraction for writeTimeout", RoleServer, serverHead + "  writeTimeout: 10.5\n", 4, "server.writeTimeout", "expected an integer number of milliseconds, got the number 10.5"},
		{"quoted number", RoleServer, serverHead + "  clientTimeout: \"30\"\n", 4, "server.clientTimeout", `expected an integer number of seconds, got the string "30"`},
		{"string for list", RoleClient, clientHead + "  excludedInterfaces: wg0\n", 4, "client.excludedInterfaces", `expected a list of interface names, got the string "wg0"`},
		{"mapping for list", RoleClient, clientHead + "  dstOverrides:\n    ifName: eth1\n", 5, "client.dstOverrides", "expected a list of {ifName, dstAddr}, got a mapping"},
		{"string for mapping", RoleClient, clientHead + "  webManager: yes\n", 4, "client.webManager", `expected a mapping of keys to values, got the string "yes"`},
		{"list item for string", RoleClient, clientHead + "  excludedInterfaces:\n    - eth0\n    - [wg0]\n", 6, "client.excludedInterfaces[1]", "expected a string, got a list"},
		{"label not a string", RoleClient, clientHead + "  interfaceLabels:\n    eth0: [a]\n", 5, "client.interfaceLabels.eth0", "expected a string, got a list"},
		{"labels wrong type", RoleClient, clientHead + "  interfaceLabels: Fiber\n", 4, "client.interfaceLabels", "expected a mapping of interface name to label"},
		{"bool", RoleClient, clientHead + "  engine: {gso: maybe}\n", 4, "client.engine.gso", `expected true or false, got the string "maybe"`},
		{"forwardAnyUDP not a bool", RoleServer, serverHead + "  forwardAnyUDP: sometimes\n", 4, "server.forwardAnyUDP", `expected true or false, got the string "sometimes"`},
		{"forwardAnyUDP in client", RoleClient, clientHead + "  forwardAnyUDP: true\n", 4, "client.forwardAnyUDP", `unknown key "forwardAnyUDP"`},
		{"override item not a mapping", RoleClient, clientHead + "  dstOverrides:\n    - eth1\n", 5, "client.dstOverrides[0]", `expected a mapping of keys to values, got the string "eth1"`},
		{"alias reported where used", RoleClient, "server:\n  x: &bad [1]\nclient:\n  dstAddr: \"192.0.2.1:1\"\n  listenAddr: *bad\n", 5, "client.listenAddr", "expected a string, got a list"},
		{"UTF-16 file", RoleClient, utf16LE(clientHead + "  x: 1\n"), 4, "client.x", `unknown key "x"`},
		{"complex key", RoleClient, clientHead + "  ? [a, b]\n  : c\n", 4, "client", "expected a key name, got a list"},
		{"bad binary", RoleClient, clientHead + "  description: !!binary \"***\"\n", 4, "client.description", "invalid !!binary value"},
		{"number for bool", RoleServer, serverHead + "  engine: {gro: 1}\n", 4, "server.engine.gro", "expected true or false, got the number 1"},
		{"bool for number", RoleServer, serverHead + "  engine: {batchSize: true}\n", 4, "server.engine.batchSize", "expected an integer, got true"},
		{"merge of a scalar", RoleClient, clientHead + "  webManager:\n    <<: 1\n", 5, "client.webManager", "merge key (<<) expected a mapping or a list of mappings"},

		// Required keys.
		{"missing listenAddr", RoleClient, "client:\n  dstAddr: \"192.0.2.1:1\"\n", 1, "client.listenAddr", `missing required key "listenAddr"`},
		{"missing dstAddr", RoleServer, "# comment\nserver:\n  listenAddr: \":1\"\n", 2, "server.dstAddr", `missing required key "dstAddr"`},
		{"empty dstAddr", RoleClient, "client:\n  listenAddr: \":1\"\n  dstAddr: \"\"\n", 3, "client.dstAddr", "must not be empty"},
		{"null listenAddr", RoleServer, "server:\n  listenAddr:\n  dstAddr: \"127.0.0.1:1\"\n", 2, "server.listenAddr", "must not be empty"},

		// Addresses.
		{"no port", RoleClient, "client:\n  listenAddr: \":1\"\n  dstAddr: \"1.2.3.4\"\n", 3, "client.dstAddr", `invalid address "1.2.3.4": missing port`},
		{"port out of range", RoleClient, "client:\n  listenAddr: \"1.2.3.4:99999\"\n  dstAddr: \"192.0.2.1:1\"\n", 2, "client.listenAddr", `invalid address "1.2.3.4:99999": port must be between 1 and 65535`},
		{"unclosed bracket", RoleServer, "server:\n  listenAddr: \":1\"\n  dstAddr: \"[fe80::1\"\n", 3, "server.dstAddr", `invalid address "[fe80::1": missing ']'`},
		{"dstAddr without host", RoleServer, "server:\n  listenAddr: \":1\"\n  dstAddr: \":59301\"\n", 3, "server.dstAddr", `invalid address ":59301": missing host`},
		{"IPv6 without brackets", RoleClient, "client:\n  listenAddr: \"::1:59401\"\n  dstAddr: \"192.0.2.1:1\"\n", 2, "client.listenAddr", "put an IPv6 host in brackets"},
		{"bad host name", RoleClient, "client:\n  listenAddr: \":1\"\n  dstAddr: \"my server:1\"\n", 3, "client.dstAddr", `"my server" is not a valid host name`},
		{"bad IPv4", RoleClient, "client:\n  listenAddr: \":1\"\n  dstAddr: \"192.0.2.256:1\"\n", 3, "client.dstAddr", `"192.0.2.256" is not a valid IPv4 address`},
		{"named port", RoleClient, "client:\n  listenAddr: \":1\"\n  dstAddr: \"vpn.example.com:engarde\"\n", 3, "client.dstAddr", `port "engarde" is not a number`},
		{"password without username", RoleClient, clientHead + "  webManager:\n    listenAddr: \"127.0.0.1:9001\"\n    password: secret\n", 6, "client.webManager.username", "missing or empty, but password is set on line 6: a login needs both"},
		{"username without password", RoleServer, serverHead + "  webManager:\n    username: admin\n    password: \"\"\n", 5, "server.webManager.password", "missing or empty, but username is set on line 5"},
		{"username with null password", RoleClient, clientHead + "  webManager: {username: admin, password: }\n", 4, "client.webManager.password", "a login needs both; set neither for none"},
		{"certFile without keyFile", RoleServer, serverHead + "  webManager:\n    listenAddr: \":9001\"\n    certFile: web.crt\n", 6, "server.webManager.keyFile", "missing or empty, but certFile is set on line 6: HTTPS needs both"},
		{"keyFile without certFile", RoleClient, clientHead + "  webManager:\n    keyFile: web.key\n", 5, "client.webManager.certFile", "but keyFile is set on line 5"},
		{"allowedHosts with a port", RoleClient, clientHead + "  webManager:\n    allowedHosts: [\"a.example:9001\"]\n", 5, "client.webManager.allowedHosts[0]", `write the host without the port ("a.example", not "a.example:9001")`},
		{"allowedHosts bad name", RoleServer, serverHead + "  webManager:\n    allowedHosts:\n      - ok.example\n      - \"bad name\"\n", 7, "server.webManager.allowedHosts[1]", `"bad name" is not a valid host name`},
		{"allowedHosts empty name", RoleServer, serverHead + "  webManager:\n    allowedHosts: [\"\"]\n", 5, "server.webManager.allowedHosts[0]", "must not be empty"},
		{"allowedHosts not a list", RoleServer, serverHead + "  webManager:\n    allowedHosts: a.example\n", 5, "server.webManager.allowedHosts", `expected a list of host names, got the string "a.example"`},
		{"webManager address", RoleServer, serverHead + "  webManager:\n    listenAddr: \"0.0.0.0\"\n", 5, "server.webManager.listenAddr", `invalid address "0.0.0.0": missing port`},

		// dstOverrides.
		{"override bad address", RoleClient, clientHead + "  dstOverrides:\n    - ifName: eth1\n      dstAddr: \"192.0.2.2:1\"\n    - ifName: eth2\n      dstAddr: \"192.0.2.3\"\n", 8, "client.dstOverrides[1].dstAddr", `invalid address "192.0.2.3": missing port`},
		{"override missing ifName", RoleClient, clientHead + "  dstOverrides:\n    - dstAddr: \"192.0.2.2:1\"\n", 5, "client.dstOverrides[0].ifName", `missing required key "ifName"`},
		{"override missing dstAddr", RoleClient, clientHead + "  dstOverrides:\n    - ifName: eth1\n", 5, "client.dstOverrides[0].dstAddr", `missing required key "dstAddr"`},
		{"override empty ifName", RoleClient, clientHead + "  dstOverrides:\n    - ifName: \"\"\n      dstAddr: \"192.0.2.2:1\"\n", 5, "client.dstOverrides[0].ifName", "interface name must not be empty"},
		{"override empty dstAddr", RoleClient, clientHead + "  dstOverrides:\n    - ifName: eth1\n      dstAddr:\n", 6, "client.dstOverrides[0].dstAddr", "must not be empty"},
		{"override null item", RoleClient, clientHead + "  dstOverrides:\n    -\n", 5, "client.dstOverrides[0]", "empty override"},
		{"override duplicate ifName", RoleClient, clientHead + "  dstOverrides:\n    - ifName: eth1\n      dstAddr: \"192.0.2.2:1\"\n    - ifName: eth1\n      dstAddr: \"192.0.2.3:1\"\n", 7, "client.dstOverrides[1].ifName", `duplicate override for interface "eth1" (first on line 5)`},

		// Interfaces.
		{"empty excluded interface", RoleClient, clientHead + "  excludedInterfaces:\n    - wg0\n    - \"\"\n", 6, "client.excludedInterfaces[1]", "interface name must not be empty"},
		{"null excluded interface", RoleClient, clientHead + "  excludedInterfaces:\n    -\n    - wg0\n", 5, "client.excludedInterfaces[0]", "interface name must not be empty"},
		{"empty label interface", RoleClient, clientHead + "  interfaceLabels:\n    \"\": x\n", 5, `client.interfaceLabels[""]`, "interface name must not be empty"},
		{"labels list missing ifName", RoleClient, clientHead + "  interfaceLabels:\n    - label: x\n", 5, "client.interfaceLabels[0].ifName", `missing required key "ifName"`},
		{"labels list duplicate", RoleClient, clientHead + "  interfaceLabels:\n    - {ifName: eth0, label: a}\n    - {ifName: eth0, label: b}\n", 6, "client.interfaceLabels[1].ifName", `duplicate label for interface "eth0" (first on line 5)`},

		// Numbers.
		{"negative clientTimeout", RoleServer, serverHead + "  clientTimeout: -1\n", 4, "server.clientTimeout", "must not be negative"},
		{"huge writeTimeout", RoleServer, serverHead + "  writeTimeout: 9223372036854775807\n", 4, "server.writeTimeout", "is too large"},
		{"overflowing integer", RoleServer, serverHead + "  writeTimeout: 18446744073709551615\n", 4, "server.writeTimeout", "number 18446744073709551615 is too large"},
		{"integer beyond uint64", RoleServer, serverHead + "  writeTimeout: 99999999999999999999\n", 4, "server.writeTimeout", "expected an integer number of milliseconds, got the number 99999999999999999999"},
		{"fwmark negative", RoleClient, clientHead + "  fwmark: -1\n", 4, "client.fwmark", "-1 is out of range; must be between 0 and 0xFFFFFFFF"},
		{"fwmark too large", RoleClient, clientHead + "  fwmark: 0x100000000\n", 4, "client.fwmark", "0x100000000 is out of range"},
		{"fwmark quoted", RoleClient, clientHead + "  fwmark: \"0x10\"\n", 4, "client.fwmark", `expected an integer, got the string "0x10"`},
		{"batchSize zero", RoleClient, clientHead + "  engine:\n    batchSize: 0\n", 5, "client.engine.batchSize", "0 is out of range; must be between 1 and 1024"},
		{"batchSize large", RoleServer, serverHead + "  engine:\n    batchSize: 2048\n", 5, "server.engine.batchSize", "must be between 1 and 1024"},
		{"queueLength small", RoleClient, clientHead + "  engine:\n    queueLength: 8\n", 5, "client.engine.queueLength", "must be between 16 and 65536"},
		{"queueLength large", RoleClient, clientHead + "  engine:\n    queueLength: 65537\n", 5, "client.engine.queueLength", "must be between 16 and 65536"},
		{"bufferSize small", RoleServer, serverHead + "  engine:\n    bufferSize: 1400\n", 5, "server.engine.bufferSize", "must be between 1500 and 65536"},
		{"bufferSize large", RoleServer, serverHead + "  engine:\n    bufferSize: 70000\n", 5, "server.engine.bufferSize", "must be between 1500 and 65536"},

		// Allowed sets.
		{"log level", RoleClient, clientHead + "  log:\n    level: verbose\n", 5, "client.log.level", `"verbose" is not allowed; use one of "debug", "info", "warn" or "error"`},
		{"log format", RoleServer, serverHead + "  log: {format: yaml}\n", 4, "server.log.format", `"yaml" is not allowed; use one of "auto", "text" or "json"`},
		{"backend", RoleServer, serverHead + "  engine:\n    backend: epoll\n", 5, "server.engine.backend", `"epoll" is not allowed; use one of "auto", "mmsg", "uring" or "std"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.src), "engarde.yml", tt.role)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", section(cfg))
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error")
			}
			errs := configErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			e := errs[0]
			if e.File != "engarde.yml" || e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %#v\nwant line %d key %q msg containing %q", *e, tt.line, tt.key, tt.msg)
			}
		})
	}
}

// TestManyErrors checks that all problems are reported, in file order.
func TestManyErrors(t *testing.T) {
	src := `client:
  listenAddr: "1.2.3.4"
  excludedInterface: [wg0]
  writeTimeout: fast
  dstOverrides:
    - ifName: eth1
      dstAddr: "[fe80::1"
  log: {level: verbose}
  engine:
    backend: epoll
    queueLength: 8
server:
  this: is not checked
bogus: 1
`
	_, err := Parse([]byte(src), "engarde.yml", RoleClient)
	want := []string{
		`engarde.yml:1: client.dstAddr: missing required key "dstAddr"`,
		`engarde.yml:2: client.listenAddr: invalid address "1.2.3.4": missing port; expected host:port`,
		`engarde.yml:3: client.excludedInterface: unknown key "excludedInterface" (did you mean "excludedInterfaces"?)`,
		`engarde.yml:4: client.writeTimeout: expected an integer number of milliseconds, got the string "fast"`,
		`engarde.yml:7: client.dstOverrides[0].dstAddr: invalid address "[fe80::1": missing ']'; expected host:port`,
		`engarde.yml:8: client.log.level: "verbose" is not allowed; use one of "debug", "info", "warn" or "error"`,
		`engarde.yml:10: client.engine.backend: "epoll" is not allowed; use one of "auto", "mmsg", "uring" or "std"`,
		`engarde.yml:11: client.engine.queueLength: 8 is out of range; must be between 16 and 65536`,
		`engarde.yml:14: bogus: unknown key "bogus"`,
	}
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() =\n%s", err)
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 1 {
		t.Errorf("errors.As found %v, want the line 1 error", first)
	}
}

// TestAliasBomb is a regression test: aliases are walked again at every
// use, so merge keys that merge aliases that merge aliases must hit the
// visit budget instead of taking time exponential in the file size.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("server:\n  a0: &a0 {ifName: x, dstAddr: \"192.0.2.1:1\"}\n")
	for i := 1; i < 15; i++ {
		b.WriteString("  a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]}\n")
	}
	b.WriteString(clientHead + "  dstOverrides:\n    - <<: *a14\n")
	start := time.Now()
	_, err := Parse([]byte(b.String()), "bomb.yml", RoleClient)
	if err == nil || !strings.Contains(err.Error(), "too complex") {
		t.Fatalf("Parse = %v, want a too complex error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

// TestSelfMerge is a regression test: a mapping that merges itself must
// fail instead of recursing forever.
func TestSelfMerge(t *testing.T) {
	_, err := Parse([]byte("client: &c\n  <<: *c\n  listenAddr: \":1\"\n  dstAddr: \"192.0.2.1:1\"\n"), "engarde.yml", RoleClient)
	if err == nil || !strings.Contains(err.Error(), "merge keys nested more than") {
		t.Errorf("Parse = %v, want a merge depth error", err)
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(clientHead)
	for i := 0; i < 2*maxErrors; i++ {
		b.WriteString("  k" + strconv.Itoa(i) + ": 1\n")
	}
	_, err := Parse([]byte(b.String()), "engarde.yml", RoleClient)
	errs := configErrors(t, err)
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "too many errors") {
		t.Errorf("got %d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

func TestCountLines(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"", 1}, {"a", 1}, {"a\n", 2}, {"a\r\nb", 2}, {"a\rb\nc", 3}, {"a\u2028b\u0085c", 3},
		{"\xff\xfea\x00\n\x00b\x00\x28\x20c\x00", 3}, {"\xfe\xff\x00a\x00\r\x00\n\x00b", 2},
	} {
		t.Run(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(tt.in), func(t *testing.T) {
			if got := countLines(utf8Text([]byte(tt.in))); got != tt.want {
				t.Errorf("countLines = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestForwardAnyUDP: the server's forwardAnyUDP is off unless the file
// turns it on.
func TestForwardAnyUDP(t *testing.T) {
	if s := mustParse(t, serverHead, RoleServer).Server; s.ForwardAnyUDP {
		t.Error("forwardAnyUDP on by default")
	}
	if s := mustParse(t, serverHead+"  forwardAnyUDP: true\n", RoleServer).Server; !s.ForwardAnyUDP {
		t.Error("forwardAnyUDP: true not read")
	}
}

// TestWebManagerFiles: a relative certFile or keyFile is taken from the
// configuration file's directory, so a service started elsewhere finds it.
func TestWebManagerFiles(t *testing.T) {
	src := clientHead + "  webManager:\n    certFile: web.crt\n    keyFile: /etc/ssl/web.key\n"
	cfg, err := Parse([]byte(src), filepath.Join("/etc", "engarde", "engarde.yml"), RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Client.WebManager
	if w.CertFile != "/etc/engarde/web.crt" || w.KeyFile != "/etc/ssl/web.key" {
		t.Errorf("certFile, keyFile = %q, %q; want /etc/engarde/web.crt, /etc/ssl/web.key", w.CertFile, w.KeyFile)
	}
}
