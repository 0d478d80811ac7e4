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
# Test artifacts (the browser tests' screenshots) are kept in test-artifacts/.
test: pcscd
	$(GO) vet ./...
	mkdir -p $(CURDIR)/test-artifacts
	$(GO) test -race -count=1 -timeout 30m -artifacts -outputdir $(CURDIR)/test-artifacts ./...

# The suite N times in a row (default 5), to prove it does not flake:
#   make test-repeat N=10
N ?= 5
test-repeat: pcscd
	$(GO) vet ./...
	$(GO) test -race -count=$(N) -timeout 90m ./...

bench: pcscd
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./pcsc/
	$(GO) test -run '^$$' -bench . -benchtime 10x ./station/e2e/

# Fuzz targets as package:Target. go test -fuzz takes one target per package
# per run, so they run one after another. Each has its seed corpus in
# testdata/fuzz/<Target>/ (plain `go test` replays it too). A failure writes
# the input to that directory: report it with the bug, do not commit it.
FUZZ_TARGETS := \
	./pcsc/atr:FuzzParse ./pcsc:FuzzParseFeatures \
	./pcsc/apdu:FuzzParseCommand ./pcsc/apdu:FuzzCommandBytes \
	./pcsc/apdu:FuzzParseResponse ./pcsc/apdu:FuzzParseHex \
	./cardapp/records:FuzzTLV ./cardapp/records:FuzzDecodeNumeric \
	./cardapp/records:FuzzEncodeNumeric ./cardapp/records:FuzzText \
	./cardapp/records:FuzzBinary \
	./cardapp:FuzzHolderValidation ./cardapp:FuzzDecodeRequest \
	./cardapp:FuzzValidateRequest ./internal/strictjson:FuzzDecode \
	./station/journal:FuzzOpenFile ./station/journal:FuzzEntryDecode \
	./internal/cardsim/engine:FuzzParseImage \
	./internal/cardsim/ssse:FuzzParseImage \
	./firmware-profiles:FuzzLoad \
	./cmd/sscard:FuzzParseAPDULine ./cmd/sscard:FuzzReadAPDULines
FUZZTIME ?= 30s

.PHONY: fuzz fuzz-ci
# fuzz: every target for FUZZTIME (30 s each). Minimizing a new input is
# capped (-fuzzminimizetime): the journal targets open a file per input.
# Go 1.26's fuzz coordinator can end a run that found nothing with a bare
# "context deadline exceeded" at the -fuzztime boundary (golang/go#75804,
# fixed in Go 1.27): such a run, with no failing input written and no seed
# failing, is run again (up to three runs: it hit 2 of 40 10 s runs on a
# loaded 2-core machine); any other failure fails at once.
fuzz: deps
	@failed=""; out=$$(mktemp); for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		for try in 1 2 3; do \
			echo "== $$name in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10x $$pkg/ >$$out 2>&1; \
			rc=$$?; cat $$out; \
			if [ $$rc -ne 0 ] && [ $$try -lt 3 ] && grep -qx '    context deadline exceeded' $$out \
				&& ! grep -q -e 'Failing input written' -e 'failure while testing seed corpus' $$out; then \
				echo "fuzz: $$name: the coordinator's deadline race (golang/go#75804), no failing input: again"; \
				continue; \
			fi; \
			[ $$rc -eq 0 ] || failed="$$failed $$t"; \
			break; \
		done; \
	done; \
	rm -f $$out; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed"; exit 1; fi

# fuzz-ci: the run CI makes, 10 s per target (about 4 minutes in all).
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

demo: pcscd build
	@bash scripts/demo.sh

clean:
	rm -rf $(BIN) .demo test-artifacts
