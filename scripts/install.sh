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

# OSWorld's own package, for the tests that drive the real DesktopEnv and PythonController
# against a loopback VM (tests/conftest_real_osworld.py). Its pins (torch~=2.5, numpy<2,
# transformers~=4.35) conflict with ours, so it goes --no-deps into its own folder, put on
# sys.path by those tests only; beside it, the two small modules its setup controller
# imports at load time.
DESKTOP_ENV_TARGET=.desktop-env-target
if [ ! -f "$DESKTOP_ENV_TARGET/desktop_env-1.0.2.stamp" ]; then
  rm -rf "$DESKTOP_ENV_TARGET"
  .venv/bin/pip install -q --no-deps --target "$DESKTOP_ENV_TARGET" \
    desktop-env==1.0.2 requests-toolbelt==1.0.0 python-dotenv==1.2.1
  touch "$DESKTOP_ENV_TARGET/desktop_env-1.0.2.stamp"
fi

# verl 0.9.1 in a venv of its own, for the agent-loop tests (tests/test_verl_loop.py runs
# tests/verl_venv/ with it): verl pins transformers<5.11, qwen-cua runs a newer one. verl
# imports cachetools, uvicorn and fastapi without declaring them; torch is pinned as above,
# and so is the transformers pip picks for verl 0.9.1 (5.10.4). Our package goes in
# without its dependencies: the trainer modules need only what verl brings.
[ -x .venv-verl/bin/python ] || "$PYTHON" -m venv .venv-verl
.venv-verl/bin/pip install -q torch==2.13.0
.venv-verl/bin/pip install -q verl==0.9.1 transformers==5.10.4 cachetools uvicorn fastapi pytest
.venv-verl/bin/pip install -q --no-deps -e .
