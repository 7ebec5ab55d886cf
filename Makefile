# dpkit — the two commands: `make demo` and `make test` (both as root on Debian 12).

SHELL    := /bin/bash
GO       ?= go
BIN      := $(CURDIR)/.cache/bin
FUZZTIME ?= 10s
BENCH    ?= .
COUNT    ?= 5
export GOFLAGS := -buildvcs=false

.PHONY: all demo test deps fmt-check vet staticcheck unit fuzz-smoke bench-check deploy-check bench examples clean

all: examples

## demo: build and run the best working example (see README).
demo: deps
	./scripts/demo.sh

## test: install what the tests need, then run every check and test.
test: deps fmt-check vet staticcheck unit fuzz-smoke bench-check deploy-check
	@echo "make test: all checks passed"

deps:
	./scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(BIN)/staticcheck ./...

## unit: every test with the race detector; privileged tests run too (we are root).
unit:
	$(GO) test -race -count=1 -timeout 30m ./...

fuzz-smoke:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-smoke.sh

## bench-check: the benchmark module builds and its benchmarks run once.
bench-check:
	@if [ -f bench/go.mod ]; then cd bench && $(GO) vet ./... && $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...; fi

## deploy-check: the Kubernetes manifests decode strictly with the Kubernetes API types.
deploy-check:
	cd examples/vrouter/deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

## bench: run the benchmarks (with peers) and print a benchstat table.
bench: deps
	BENCH='$(BENCH)' COUNT=$(COUNT) ./scripts/bench.sh

examples:
	$(GO) build -o bin/ ./examples/...

clean:
	rm -rf bin out
