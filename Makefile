# bccguard build and test targets. `make test` is what .ci/run runs.
GO ?= go

.PHONY: build test vet run fuzz

build:
	$(GO) build -o bin/bccguard ./cmd/bccguard

vet:
	$(GO) vet ./...

# Every test, the end-to-end tests against a private Postfix included
# (they need root and Debian's postfix package; .ci/run installs it).
test: vet
	$(GO) test -race -count=1 ./...

run:
	$(GO) run ./cmd/bccguard serve

FUZZTIME ?= 60s

# Runs every fuzz target for FUZZTIME each (go test allows one at a time).
fuzz:
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzParseAddressField$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzScanList$$' -fuzztime $(FUZZTIME)
	$(GO) test ./milter -run '^$$' -fuzz '^FuzzProtocol$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s

# --- Debian package (docs/install.md) ---------------------------------------
# `make deb` builds dist/bccguard and dist/bccguard_$(VERSION)-1_$(GOARCH).deb
# with nfpm, run through `go run` (not a go.mod dependency).
# nfpm.yaml reads BCCGUARD_VERSION and BCCGUARD_ARCH; nfpm itself is built for
# this machine (GOOS/GOARCH cleared), whatever GOARCH the package is for.
VERSION ?= 0.1.0
GOARCH ?= $(shell $(GO) env GOARCH)
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

.PHONY: deb deb-test

deb:
	mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o dist/bccguard ./cmd/bccguard
	BCCGUARD_VERSION=$(VERSION) BCCGUARD_ARCH=$(GOARCH) GOOS= GOARCH= $(NFPM) pkg --config nfpm.yaml --packager deb --target dist/

# Builds the package, installs, checks and purges it on this machine (root).
deb-test:
	.ci/deb-test

# --- benchmark (docs/performance.md) ------------------------------------------
# Builds bccguard, the C reference filter and the floor filter, drives them
# with cmd/milterbench, measures memory and Postfix end to end, and prints
# markdown tables and the targets (root, Debian; about 8 minutes on 2 CPUs).
# BENCH_* environment variables adjust it; see deploy/bench/run.sh.
.PHONY: bench
bench:
	@deploy/bench/run.sh
