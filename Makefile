# pushd — make run: start on :3001 with the in-memory store; make test: every test.
GO      ?= go
BIN     ?= bin
ARGS    ?=
PKGS    := ./...

.PHONY: run build test test-short lint bench clean

run:
	$(GO) build -o $(BIN)/pushd ./cmd/pushd
	$(BIN)/pushd $(ARGS)

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# PostgreSQL tests use $$PUSH_TEST_DATABASE_URL, else a throwaway cluster from
# local PostgreSQL binaries; browser tests use Debian's chromium (see README).
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$$($(GO) env GOPATH)/bin/staticcheck $(PKGS)

# Benchmarks: Go micro/store benchmarks, then a short pushbench matrix
# against pushd and the baseline server in the same run.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./stream/ ./persist/ ./api/ | tee $(BIN)/bench-go.txt
	./scripts/bench-matrix.sh $(BIN)

clean:
	rm -rf $(BIN)
