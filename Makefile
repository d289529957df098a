# The two commands of the README: `make run` serves the demo, `make test` runs every test.
# Both install what is missing first (scripts/deps.sh).

ARGS ?=
CARGO ?= cargo

.PHONY: run test test-lint test-rust test-browser test-interop test-fuzz deps-build deps-test

run: deps-build
	$(CARGO) run --release -- $(ARGS)

test: deps-test test-lint test-rust test-browser test-interop test-fuzz

deps-build:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

# Formatting and lints first: cheap, and a red here needs no test run to explain it.
test-lint:
	$(CARGO) fmt --check
	cd fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Unit and integration tests (webrtc-rs client peers against the real server), then
# the tests of the vendored crates' patches (vendor/PATCHES.md).
# Building them also builds target/debug/face-echo, which the other suites run.
test-rust:
	ORT_DYLIB_PATH=$(CURDIR)/target/onnxruntime/libonnxruntime.so $(CARGO) test --all-targets
	$(CARGO) test -p rtc-srtp -p rtc-rtcp -p rtc-ice

# The page in headless Chromium with a fake camera, against the real server: every
# browser test with plain echo at 320x240, then the page again at 640x480 with the
# decode tap and the server's own detector.
test-browser:
	cd tests/browser && FACE_ECHO_BIN=$(CURDIR)/target/debug/face-echo FACE_ECHO_SIZE=320x240 node --test
	cd tests/browser && FACE_ECHO_BIN=$(CURDIR)/target/debug/face-echo FACE_ECHO_ARGS="--decode-tap --detect" node --test e2e.test.mjs

# Independent WebRTC stacks as clients: aiortc (PyPI) and GStreamer webrtcbin (Debian),
# and a WHIP/WHEP client in Chromium.
test-interop:
	FACE_ECHO_BIN=$(CURDIR)/target/debug/face-echo tests/interop/run.sh

# cargo-fuzz targets (tap pipeline, signaling parser), 20 s each; longer: scripts/fuzz.sh 3600
test-fuzz:
	scripts/fuzz.sh 20
