# bccguard build and test targets. `make test` is what .ci/run runs.
GO ?= go

.PHONY: build test vet run

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
