# bccguard build and test targets. `make test` is what .ci/run runs.
GO ?= go

.PHONY: build test vet run fuzz

build:
	$(GO) build -o bin/bccguard ./cmd/bccguard

vet:
	$(GO) vet ./...

# Every test, the end-to-end tests against a private Postfix included
# (they need root and Debian's postfix package; .ci/run installs it).
# The e2e package alone takes 6 to 8 minutes on 2 loaded CPUs, close to go
# test's default 10-minute limit per package; the limit detects a hang,
# so it is raised rather than left to cut a slow run.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

run:
	$(GO) run ./cmd/bccguard serve

# Each target's budget is a number of executions, about 20 s on two quiet
# cores (a loaded machine takes longer, a fast one less): a count, not a
# duration, because Go 1.26 can fail a duration run at its very end with no
# input at fault (.ci/fuzz, go.dev/issue/75804). FUZZTIME overrides all
# five, as a count or a duration: `make fuzz FUZZTIME=30m`.
FUZZTIME ?=
# Bounds the minimizing of each new input, so that targets spend their time
# executing (docs/reliability.md).
FUZZMINIMIZETIME ?= 1s

# Runs every fuzz target (go test allows one at a time) and prints its exec
# count and time ("fuzz summary:" lines); a target that stands still fails
# (.ci/fuzz).
fuzz:
	GO=$(GO) .ci/fuzz ./policy FuzzParseAddressField $(or $(FUZZTIME),400000x) $(FUZZMINIMIZETIME)
	GO=$(GO) .ci/fuzz ./policy FuzzDecide $(or $(FUZZTIME),300000x) $(FUZZMINIMIZETIME)
	GO=$(GO) .ci/fuzz ./policy FuzzScanList $(or $(FUZZTIME),600000x) $(FUZZMINIMIZETIME)
	GO=$(GO) .ci/fuzz ./policy FuzzVisibleProperty $(or $(FUZZTIME),300000x) $(FUZZMINIMIZETIME)
	GO=$(GO) .ci/fuzz ./milter FuzzProtocol $(or $(FUZZTIME),20000x) 2s

# --- packages: .deb and .rpm (docs/install.md) -------------------------------
# `make deb` builds dist/bccguard and dist/bccguard_$(VERSION)-1_$(GOARCH).deb,
# `make rpm` dist/bccguard and dist/bccguard-$(VERSION)-1.ARCH.rpm (ARCH in rpm
# terms: x86_64, aarch64), both with nfpm from nfpm.yaml, run through
# `go run` (not a go.mod dependency). `make deb rpm` builds the binary once.
# nfpm.yaml reads BCCGUARD_VERSION and BCCGUARD_ARCH; nfpm itself is built for
# this machine (GOOS/GOARCH cleared), whatever GOARCH the package is for.
VERSION ?= 0.1.0
GOARCH ?= $(shell $(GO) env GOARCH)
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

.PHONY: dist-binary deb rpm deb-test rpm-test

dist-binary:
	mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o dist/bccguard ./cmd/bccguard

deb rpm: dist-binary
	BCCGUARD_VERSION=$(VERSION) BCCGUARD_ARCH=$(GOARCH) GOOS= GOARCH= $(NFPM) pkg --config nfpm.yaml --packager $@ --target dist/

# Builds the package, installs, checks and purges it on this machine (root).
deb-test:
	.ci/deb-test

# Builds both packages, checks the .rpm's metadata and scriptlets, installs it
# into a scratch root and compares it with the .deb, compiles the SELinux
# module (root, Debian with rpm, shellcheck, checkpolicy, semodule-utils;
# installs nothing on this machine).
rpm-test:
	.ci/rpm-test

# --- benchmark (docs/performance.md) ------------------------------------------
# Builds bccguard, the C reference filter and the floor filter, drives them
# with cmd/milterbench, measures memory and Postfix end to end, and prints
# markdown tables and the targets (root, Debian; about 8 minutes on 2 CPUs).
# BENCH_* environment variables adjust it; see deploy/bench/run.sh.
.PHONY: bench
bench:
	@deploy/bench/run.sh
