# The station's two set-up commands for a fresh Debian machine, as root:
#   make demo   installs what is needed, starts pcscd with virtual readers and
#               the virtual card, and runs the station end to end on them
#   make test   the same set-up, then go vet and the tests with the race detector
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin

.PHONY: all build deps pcscd test test-repeat test-short bench fuzz demo clean

all: build

deps:
	@bash scripts/install-deps.sh
	@$(GO) mod download

pcscd: deps
	@bash scripts/pcscd-up.sh

build: deps
	$(GO) build -o $(BIN)/ ./cmd/...

# The test command CI runs (.ci/run calls exactly this target).
test: pcscd
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# The suite N times in a row (default 5), to prove it does not flake:
#   make test-repeat N=10
N ?= 5
test-repeat: pcscd
	$(GO) vet ./...
	$(GO) test -race -count=$(N) -timeout 90m ./...

bench: pcscd
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pcsc/

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./pcsc/atr/

demo: pcscd build
	@bash scripts/demo.sh

clean:
	rm -rf $(BIN) .demo
