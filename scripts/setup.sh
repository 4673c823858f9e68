#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with lipstream and its dependencies.
# `scripts/setup.sh test` also installs what the test suite needs (Debian chromium
# for the browser tests, nginx + libnginx-mod-rtmp as a real RTMP ingest, test
# extras).  Nothing is downloaded except packages from PyPI and Debian; no model
# weights are fetched (see checkpoints/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=${1:-}
PY=${PYTHON:-python3}
stamp=.venv/.lipstream-setup-$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)${want_test:+-test}

if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # The test suite runs the Ray scale-out tests on a local cluster; `make run` never needs Ray.
  .venv/bin/pip install -q -e ".[test${want_test:+,ray}]"
  .venv/bin/pip install -q --no-deps "mediapipe==0.10.21"
  touch "$stamp"
fi

if [ "$want_test" = "test" ]; then
  # The training-only TTS engines (flite, festival HTS, MBROLA) have tests too.
  if [ "$(id -u)" = 0 ] && { ! command -v flite >/dev/null || ! command -v mbrola >/dev/null; }; then
    scripts/install_tts_extras.sh || echo "note: TTS extras not installed; their tests will skip" >&2
  fi
  need=()
  command -v chromium >/dev/null || need+=(chromium)
  [ -d /usr/share/pocketsphinx/test/data ] || need+=(pocketsphinx-testdata)
  [ -d /usr/share/sounds/alsa ] || need+=(alsa-utils)
  # A real RTMP ingest for the broadcast-output tests, and CJK glyphs for the bilingual console.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
  [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
  [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need+=(fonts-noto-cjk)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    else
      echo "note: install Debian packages for the full test suite: ${need[*]}" >&2
    fi
  fi
fi
