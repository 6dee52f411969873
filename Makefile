# The two commands of the README: `make run` and `make test`. Both install what
# is missing (Debian packages, the project's .venv) before building.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
APT_PACKAGES := libdcmtk-dev libopenjp2-7-dev libopenblas-dev libsqlite3-dev libcurl4-openssl-dev libssl-dev openssl python3-venv
# The tests' real peers: Orthanc (a PACS) pushes studies to us by STOW-RS and C-STORE; dcmtk's
# echoscu/storescu/findscu; dicom3tools' dciodvfy validates what we write; a real head CT
# (invesalius-examples, GPL-2) that Tools/real_ct.py wraps as DICOM at test time.
TEST_APT_PACKAGES := orthanc orthanc-dicomweb invesalius-examples dcmtk dicom3tools
FUZZ_SECONDS ?= 30
FUZZ_TEST_SECONDS ?= 20

.PHONY: all deps venv build release test test-swift test-python test-fuzz fuzz-build run placeholder-model bench fuzz soak clean

all: build

# Installs only what is missing; needs root (or sudo) the first time.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing:$$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-cache-dir --upgrade pip
	$(VENV)/bin/pip install -q --no-cache-dir -r requirements.txt
	touch $@

venv: $(VENV)/.installed

build: deps
	swift build

release: deps
	swift build -c release

# The Python tests drive a release ichctl and ich-server: a debug build spends
# most of a minute just loading a ResNet50 bundle.
test: APT_PACKAGES += $(TEST_APT_PACKAGES)
test: deps venv
	swift build
	swift build -c release --product ichctl
	swift build -c release --product ich-server
	$(MAKE) --no-print-directory test-swift test-fuzz test-python

test-swift:
	swift test

test-python:
	ICHCTL=$(CURDIR)/.build/release/ichctl ICH_SERVER=$(CURDIR)/.build/release/ich-server $(VENV)/bin/pytest -q Tests/python

# SIGTERM at random moments, many more times than make test's 20 (SOAK_TRIES=200 by default).
SOAK_TRIES ?= 200
soak: deps venv release
	ICH_SOAK_TRIES=$(SOAK_TRIES) ICHCTL=$(CURDIR)/.build/release/ichctl ICH_SERVER=$(CURDIR)/.build/release/ich-server \
		$(VENV)/bin/pytest -q -s Tests/python/test_crash.py -k sigterm_at_any_moment

# The default model is Models/default (a trained bundle, see Models/README.md).
# Without one (a checkout that removed it), `make run` builds a placeholder bundle with seeded random
# weights; it says so in model.json and in every API response.
DATA_DIR ?= data
PLACEHOLDER_MODEL := .build-models/placeholder-inception_v3
MODEL ?= $(if $(wildcard Models/default/model.json),Models/default,$(PLACEHOLDER_MODEL))
HOST ?= 127.0.0.1
PORT ?= 8080
# C-STORE from this machine (storescu -aec ICHTRIAGE 127.0.0.1 11112 ...): no peers listed, so loopback callers only.
DICOM_PORT ?= 11112

$(PLACEHOLDER_MODEL)/model.json: | $(VENV)/.installed
	mkdir -p .build-models
	$(PYTHON) Tools/keras_reference.py --arch inception_v3 --size 256 --seed 0 --out .build-models/placeholder.weights.h5
	$(PYTHON) Tools/convert_keras.py --arch inception_v3 --weights .build-models/placeholder.weights.h5 \
		--out $(PLACEHOLDER_MODEL) --name placeholder-inception_v3 --version 0 --golden 2 --synthetic-data \
		--trained-on "nothing: seeded random weights, a placeholder until Models/default holds a trained bundle"

placeholder-model: $(PLACEHOLDER_MODEL)/model.json

# Builds the server (release), makes an admin token on first run (printed, and
# kept in $(DATA_DIR)/admin.token for the demo) and serves until Ctrl-C.
run: deps venv
	swift build -c release --product ich-server
	@if [ "$(MODEL)" = "$(PLACEHOLDER_MODEL)" ]; then $(MAKE) --no-print-directory placeholder-model; fi
	@mkdir -p $(DATA_DIR)
	@if [ ! -s $(DATA_DIR)/admin.token ]; then \
		umask 077; .build/release/ich-server token create --scope admin --name make-run --data-dir $(DATA_DIR) > $(DATA_DIR)/admin.token; \
	fi
	@echo "admin token (also in $(DATA_DIR)/admin.token): $$(cat $(DATA_DIR)/admin.token)"
	@echo "try: curl -H \"Authorization: Bearer \$$(cat $(DATA_DIR)/admin.token)\" http://$(HOST):$(PORT)/v1/studies"
	.build/release/ich-server serve --host $(HOST) --port $(PORT) --dicom-port $(DICOM_PORT) --data-dir $(DATA_DIR) --model $(MODEL)

bench: release venv placeholder-model
	$(PYTHON) Benchmarks/preprocess.py --ichctl .build/release/ichctl
	$(PYTHON) Benchmarks/forward_pass.py --ichctl .build/release/ichctl
	$(PYTHON) Benchmarks/service.py --ichctl .build/release/ichctl --server .build/release/ich-server --model $(PLACEHOLDER_MODEL)

# libFuzzer on the DICOM decoder (Swift + the DCMTK shim, AddressSanitizer), on
# the HTTP parsers (head, framing, chunked, multipart; whole against split input)
# and on the safetensors reader. `make fuzz FUZZ_SECONDS=3600` for a real run
# (corpora grow in .build-fuzz/corpus-*); the test target runs each briefly from
# the committed seeds only.
FUZZ_FLAGS_FuzzDICOM := -max_len=70000
FUZZ_FLAGS_FuzzHTTP := -max_len=8192 -dict=Fuzz/http.dict
FUZZ_FLAGS_FuzzSafeTensors := -max_len=4096
FUZZ_SEEDS_FuzzDICOM := Fuzz/corpus/dicom
FUZZ_SEEDS_FuzzHTTP := Fuzz/corpus/http
FUZZ_SEEDS_FuzzSafeTensors := Fuzz/corpus/safetensors
FUZZ_TARGETS := FuzzDICOM FuzzHTTP FuzzSafeTensors
# $(call fuzz-run,TARGET,WORKING_CORPUS,SECONDS)
fuzz-run = mkdir -p $(2) && .build-fuzz/release/$(1) -max_total_time=$(3) -rss_limit_mb=4096 $(FUZZ_FLAGS_$(1)) \
	-artifact_prefix=.build-fuzz/ -print_final_stats=1 $(2) $(FUZZ_SEEDS_$(1))

fuzz: deps fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz-run,$(t),.build-fuzz/corpus-$(t),$(FUZZ_SECONDS)) &&) true

test-fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),rm -rf .build-fuzz/test-corpus-$(t) && \
		$(call fuzz-run,$(t),.build-fuzz/test-corpus-$(t),$(FUZZ_TEST_SECONDS)) 2>&1 \
		| sed -n -e '/^stat::number_of_executed_units/p' -e '/^Done/p' -e '/ERROR/,$$p' -e '/Fatal error/,$$p' &&) true

# Builds every fuzz target of Fuzz/Package.swift.
fuzz-build:
	cd Fuzz && swift build -c release --scratch-path ../.build-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
		-Xcc -fsanitize=address -Xcxx -fsanitize=address 2>&1 | sed '/Cannot export local symbol/d'

clean:
	rm -rf .build .build-fuzz
