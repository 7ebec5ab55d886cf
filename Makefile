# dpkit — the two commands: `make demo` and `make test` (both as root on Debian 12).

SHELL    := /bin/bash
GO       ?= go
BIN      := $(CURDIR)/.cache/bin
FUZZTIME ?= 10s
BENCH    ?= .
COUNT    ?= 5
export GOFLAGS := -buildvcs=false
# scripts/deps.sh puts Go here when the go on PATH is missing or older than go.mod asks.
export PATH := $(CURDIR)/.cache/go/bin:$(PATH)

.PHONY: all demo test deps fmt-check vet staticcheck unit allocs fuzz-smoke bench-check deploy-check bench examples clean

all: examples

## demo: build and run the best working example (see README).
demo: deps
	./scripts/demo.sh

## test: install what the tests need, then run every check and test.
test: deps fmt-check vet staticcheck unit allocs fuzz-smoke bench-check deploy-check
	@echo "make test: all checks passed"

deps:
	./scripts/deps.sh

## fmt-check: fails when git lists no Go files (a checkout git refuses, e.g. owned
## by another user), rather than letting gofmt read stdin and pass.
fmt-check:
	@files=$$(git ls-files '*.go') && [ -n "$$files" ] || { echo "fmt-check: git listed no Go files"; exit 1; }; \
	out=$$(gofmt -l $$files); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(BIN)/staticcheck ./...

## unit: every test with the race detector; privileged tests run too (we are root).
unit:
	$(GO) test -race -count=1 -timeout 30m ./...

## allocs: the zero-allocation tests again without the race detector, which
## allocates itself and makes some of them skip under unit.
allocs:
	$(GO) test -count=1 -run 'Alloc' ./...

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
