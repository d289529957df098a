#!/usr/bin/env bash
# Installs what face-echo needs on a fresh Debian 12 machine, and only what is missing.
#   scripts/deps.sh build   libvpx and pkg-config, to build and run the server, and
#                           ONNX Runtime (target/onnxruntime/) for --detect
#   scripts/deps.sh test    the above, plus Chromium and the npm packages of the browser
#                           test and of the WHIP/WHEP interop client (and redis-server,
#                           which the --cluster tests start, and nftables, which drops
#                           UDP in the ICE-TCP browser test's network namespace)
set -euo pipefail
cd "$(dirname "$0")/.."

want=(pkg-config libvpx-dev)
if [ "${1:-build}" = test ]; then
  want+=(chromium vpx-tools redis-server nftables)
fi
# Debian's own python3 comes without pip (used to fetch the ONNX Runtime wheel) and
# takes Pillow from apt; another python3 (pyenv, a venv) brings its pip.
debian_python=0
[ "$(command -v python3)" = /usr/bin/python3 ] && debian_python=1
if [ $debian_python = 1 ]; then
  python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
  [ "${1:-build}" = test ] && want+=(python3-pil)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "deps: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

# ONNX Runtime for --detect (from the PyPI onnxruntime wheel), into target/onnxruntime/.
scripts/onnxruntime.sh >/dev/null

if [ "${1:-build}" = test ]; then
  # The browser test turns a photo into a Y4M fake camera with Pillow.
  if [ $debian_python = 0 ] && ! python3 -c 'import PIL' 2>/dev/null; then
    echo "deps: pip install pillow"
    python3 -m pip install --quiet pillow
  fi
  # playwright-core drives Debian's chromium; it never downloads a browser of its own.
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "deps: npm ci in tests/browser"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
  # The WHIP/WHEP interop client (Medooze's whip-whep in that chromium).
  if [ ! -d tests/interop/whip/node_modules/whip-whep ]; then
    echo "deps: npm ci in tests/interop/whip"
    (cd tests/interop/whip && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
fi
