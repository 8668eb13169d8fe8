#!/usr/bin/env bash
# Install everything qwen-cua needs on a Debian machine: system packages (only those
# missing), a virtual environment in .venv, and the project with its Python deps.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(chromium xvfb xdotool xclip x11-utils adb fonts-dejavu-core fonts-noto-cjk xterm mousepad openbox)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is the CPU wheel; an unpinned torch pulls a CUDA build.
.venv/bin/pip install -q torch==2.13.0
# The project with every extra: the test suite covers training exports, Ray and the
# toolchain. A user's `pip install qwen-cua` gets only the core (see pyproject.toml).
.venv/bin/pip install -q -e '.[train,ray,dev,serve]'
