#!/usr/bin/env bash
# ONNX Runtime for --detect, taken from the PyPI `onnxruntime` wheel (CPU, manylinux x86_64).
#   scripts/onnxruntime.sh          makes target/onnxruntime/libonnxruntime.so exist; prints its path
#   scripts/onnxruntime.sh python   also makes a venv at target/detect-venv with the same
#                                   onnxruntime + numpy + Pillow (for tests/detect/reference.py);
#                                   prints the venv's python
# Idempotent: does nothing that is already done. Progress goes to stderr, the path to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.32.0
dir=target/onnxruntime
lib="$dir/libonnxruntime.so"
real="$dir/libonnxruntime.so.$ORT_VERSION"

if [ ! -f "$real" ]; then
  echo "onnxruntime: fetching onnxruntime==$ORT_VERSION wheel from PyPI" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet "onnxruntime==$ORT_VERSION" --no-deps --only-binary=:all: -d "$tmp" >&2
  wheel=$(ls "$tmp"/onnxruntime-"$ORT_VERSION"-*.whl)
  # zipfile instead of unzip(1), which a fresh machine may lack.
  python3 - "$wheel" "$tmp/x" <<'EOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
EOF
  src="$tmp/x/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
  [ -f "$src" ] || { echo "onnxruntime: $src not in $wheel" >&2; exit 1; }
  mkdir -p "$dir"
  cp "$src" "$real.part"
  mv "$real.part" "$real"
fi
# libonnxruntime.so -> libonnxruntime.so.X.Y.Z (relative, so the tree can move).
if [ "$(readlink "$lib" 2>/dev/null)" != "libonnxruntime.so.$ORT_VERSION" ]; then
  ln -sfn "libonnxruntime.so.$ORT_VERSION" "$lib"
fi

if [ "${1:-}" = python ]; then
  venv=target/detect-venv
  py="$venv/bin/python"
  if [ ! -x "$py" ]; then
    echo "onnxruntime: creating $venv" >&2
    python3 -m venv "$venv"
  fi
  if ! "$py" -c "import onnxruntime, numpy, PIL, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')" 2>/dev/null; then
    echo "onnxruntime: pip install onnxruntime==$ORT_VERSION numpy pillow into $venv" >&2
    "$py" -m pip install --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" numpy pillow >&2
  fi
  echo "$(pwd)/$py"
else
  echo "$(pwd)/$lib"
fi
