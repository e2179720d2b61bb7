# engarde: a redundant UDP tunnel under WireGuard.
# `make help` lists the targets.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/engarde-project/engarde/cmd/internal/cli.Version=$(VERSION)
BIN     := bin
PREFIX  ?= /usr/local

.PHONY: help build test race lint bench bench-ci cross demo clean

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build engarde-client, engarde-server and engarde-loadgen into bin/
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/engarde-client ./cmd/engarde-server ./bench/cmd/engarde-loadgen

test: ## run every test (the namespace tests need root and skip without it)
	$(GO) test -count=1 ./...

race: ## run the tests with the race detector
	$(GO) test -count=1 -race ./...

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: ## micro-benchmarks of the data path (ring, pool, fan-out, sockets)
	$(GO) test -run='^$$' -bench=. -benchmem ./ring/ ./engine/

bench-ci: ## run every benchmark once, so that they keep working
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

cross: ## check that the module builds for macOS and Windows (portable backend)
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./...

demo: build ## two namespaces, two links, a stream, a link pulled and restored (root; loopback otherwise)
	$(GO) run ./scripts/demo -bin $(BIN)

clean: ## remove build output
	rm -rf $(BIN)
