# engarde: a redundant UDP tunnel under WireGuard.
# `make help` lists the targets.

GO      ?= go
# The version: the nearest v* tag as git describe writes it (v0.1.0,
# v0.1.0-3-g1a2b3c4, -dirty), v0.0.0-dev+HASH without one
# (scripts/version.sh); the commit; both into cmd/internal/app with -X. A
# plain go build reports what the go command stamped (app/version.go).
VERSION ?= $(shell scripts/version.sh)
VERSION := $(VERSION)
COMMIT  ?= $(shell c=$$(git rev-parse --short=12 HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c+dirty; } && echo $$c)
COMMIT  := $(COMMIT)
# The commit's time: the date of the man pages and of every file in the
# archives and the .deb, so that one commit builds the same packages.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
LDFLAGS := -s -w -X github.com/engarde-project/engarde/cmd/internal/app.Version=$(VERSION) -X github.com/engarde-project/engarde/cmd/internal/app.Commit=$(COMMIT)
BIN     := bin
PREFIX  ?= /usr/local
# make install: where the binaries, systemd units, sysusers.d entry and
# configuration go (DESTDIR stages them elsewhere, for packaging).
BINDIR      ?= $(PREFIX)/bin
SYSTEMDDIR  ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d
CONFDIR     ?= /etc/engarde
# and the man pages and completions, when make doc has made them.
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions

.PHONY: help build install test race lint bench bench-quick bench-micro bench-tools bench-ci faults cross demo clean

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build engarde-client, engarde-server and engarde-loadgen into bin/
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/engarde-client ./cmd/engarde-server ./bench/cmd/engarde-loadgen

install: ## install bin/ (make build first), the systemd units, the engarde user and bin/doc if made (root; DESTDIR to stage)
	@test -x $(BIN)/engarde-client -a -x $(BIN)/engarde-server || { echo "run make build first (as yourself), then make install as root"; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(CONFDIR)
	install -m 755 $(BIN)/engarde-client $(BIN)/engarde-server $(DESTDIR)$(BINDIR)/
	for u in scripts/systemd/*.service; do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/engarde/|$(CONFDIR)/|g' $$u > $(DESTDIR)$(SYSTEMDDIR)/$${u##*/} && \
		chmod 644 $(DESTDIR)$(SYSTEMDDIR)/$${u##*/} || exit 1; \
	done
	install -m 644 scripts/systemd/engarde.sysusers $(DESTDIR)$(SYSUSERSDIR)/engarde.conf
	install -m 644 engarde.yml.sample $(DESTDIR)$(CONFDIR)/engarde.yml.sample
	@if [ -d $(DOC)/man ]; then \
		install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) && \
		install -m 644 $(DOC)/man/*.1 $(DESTDIR)$(MANDIR)/man1/ && install -m 644 $(DOC)/man/*.5 $(DESTDIR)$(MANDIR)/man5/ && \
		install -m 644 $(DOC)/bash/* $(DESTDIR)$(BASHCOMPDIR)/ && install -m 644 $(DOC)/zsh/* $(DESTDIR)$(ZSHCOMPDIR)/ && \
		echo "installed the man pages in $(MANDIR) and the completions"; \
	else echo "no man pages or completions in $(DOC) to install (make doc makes them)"; fi
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(SYSUSERSDIR)/engarde.conf && chgrp engarde $(CONFDIR) && chmod 750 $(CONFDIR); \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		echo "installed; now: cp $(CONFDIR)/engarde.yml.sample $(CONFDIR)/engarde.yml, edit it, chgrp engarde and chmod 640 it,"; \
		echo "then: systemctl enable --now engarde-client@engarde (or engarde-server@engarde)"; \
	fi

# The commands some tests run; a test whose command is missing skips, naming
# it (.ci/run installs them all).
TESTTOOLS := ip sysctl tc nft wg iperf3 /usr/bin/chromium promtool

test: ## run every test (the namespace tests need root and skip without it)
	@missing=; for c in $(TESTTOOLS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	notroot=; [ "$$(id -u)" = 0 ] || notroot="; not root, so the namespace tests will skip"; \
	if [ -n "$$missing" ]; then echo "make test: not found:$$missing; the tests that need them will skip$$notroot"; \
	else echo "make test: found every optional tool ($(TESTTOOLS))$$notroot"; fi
	$(GO) test -count=1 ./...

race: ## run the tests with the race detector
	$(GO) test -count=1 -race ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# contrib/: the Prometheus rules and their unit tests (promtool, from
# Debian's prometheus package), the Grafana dashboard parsed, and every
# metric the two name checked against a real scrape of both roles.
.PHONY: contrib-check
contrib-check: ## check contrib/: promtool check and test rules, the dashboard's JSON, their metric names against a scrape
	@command -v promtool >/dev/null || { echo "make contrib-check: promtool not found (Debian: apt-get install --no-install-recommends prometheus)"; exit 1; }
	promtool check rules contrib/prometheus/engarde.rules.yml
	cd contrib/prometheus && promtool test rules engarde.rules.test.yml
	$(GO) test -count=1 -run '^(TestContribNames|TestCheckExpr|TestPromtoolMetrics|TestPromtoolRules)$$' ./cmd/internal/control/

bench: build bench-tools ## engarde vs the direct path in namespaces, WireGuard included (root; ~5 min): bench/results/latest/
	$(BIN)/engarde-bench -bin $(BIN) $(BENCHFLAGS)

bench-quick: build bench-tools ## a subset of make bench in under a minute (mmsg, one pair, no WireGuard)
	$(BIN)/engarde-bench -bin $(BIN) -quick $(BENCHFLAGS)

bench-tools: # the bench driver, and wireguard-go from go.mod's tool dependency
	$(GO) build -trimpath -o $(BIN)/ ./bench/cmd/engarde-bench
	$(GO) build -trimpath -o $(BIN)/wireguard-go golang.zx2c4.com/wireguard

faults: build bench-tools ## the fault matrix: links, roles, WireGuard and DNS failing under a running stream through WireGuard (root; ~5 min)
	$(GO) build -trimpath -o $(BIN)/ ./bench/cmd/engarde-faults
	$(BIN)/engarde-faults -bin $(BIN) $(FAULTSFLAGS)

bench-micro: ## micro-benchmarks of the data path (ring, pool, fan-out, sockets)
	$(GO) test -run='^$$' -bench=. -benchmem ./ring/ ./engine/ ./engine/conn/

bench-ci: ## run every benchmark once, so that they keep working
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

# make soak: how long the stream runs (.ci/run: SOAK=60s).
SOAK ?= 10m
.PHONY: soak
soak: build ## a stream for SOAK (10m) with a link flap every 10 s; fails on growth of RSS, goroutines or fds, or on loss (root)
	$(GO) build -trimpath -o $(BIN)/ ./bench/cmd/engarde-soak
	$(BIN)/engarde-soak -bin $(BIN) -duration $(SOAK) -json $(BIN)/soak.json $(SOAKFLAGS)

# go test -fuzz takes one target of one package per run: every package
# whose tests define one, and every target go test -list finds there. Go
# before 1.27 may fail a run at the -fuzztime deadline with "context
# deadline exceeded" and no failing input (golang/go#75804): noted, not a
# failure; a failing input always fails.
FUZZTIME ?= 10s
.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (10s) each; a failing input lands in the package's testdata/fuzz
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "fuzz $$dir $$f ($(FUZZTIME))"; \
			if $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$dir >$$out 2>&1; then tail -n 1 $$out; continue; fi; \
			cat $$out; \
			if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
				echo "$$f: the fuzz coordinator's deadline race (golang/go#75804), no failing input: not a failure"; \
			else exit 1; fi; \
		done; \
	done

cross: ## check that the module builds for macOS and Windows (portable backend) and 32-bit ARM (make release's armv7)
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build ./...

# make doc, deb, release: generated documentation in bin/doc, packages in
# DIST. make deb GOARCH=arm64 (or arm: GOARM=7, Debian's armhf) builds
# another architecture's package; gendoc itself always runs on this host.
DOC     := $(BIN)/doc
DIST    ?= dist
DEBARCH := $(or $(GOARCH),$(shell env -u GOARCH $(GO) env GOARCH))
.PHONY: doc deb release dist-check

doc: ## man pages (engarde-client.1, engarde-server.1, engarde.yml.5) and bash/zsh completions from the help text, into bin/doc
	env -u GOOS -u GOARCH -u GOARM $(GO) run ./cmd/internal/gendoc -out $(DOC) -version $(VERSION)

deb: doc ## a Debian package (dpkg-deb) for GOARCH, the host's by default, into dist/
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DEBARCH) GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/deb-$(DEBARCH)/ ./cmd/engarde-client ./cmd/engarde-server
	scripts/deb/build.sh -bin $(BIN)/deb-$(DEBARCH) -doc $(DOC) -version $(VERSION) -arch $(DEBARCH) -out $(DIST)

release: doc ## archives for linux (amd64, arm64, armv7), macOS (amd64, arm64) and Windows (amd64), the .debs and SHA256SUMS, into dist/
	GO='$(GO)' LDFLAGS='$(LDFLAGS)' scripts/release.sh -version $(VERSION) -doc $(DOC) -out $(DIST)

dist-check: ## make deb installed with dpkg in a scratch root and checked, and make release's SHA256SUMS (root, or fakeroot)
	MAKE='$(MAKE)' GO='$(GO)' scripts/dist-check.sh

demo: build ## two namespaces, two links, a stream, a link pulled and restored (root; loopback otherwise)
	$(GO) run ./scripts/demo -bin $(BIN)

clean: ## remove build output
	rm -rf $(BIN) $(DIST)
