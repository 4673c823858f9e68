#!/usr/bin/env bash
# Debian packages for the training-only speech engines of the corpus builder
# (models/training/corpus.py): flite, festival + the US SLT HTS voice, and MBROLA with the
# US English diphone voices.  MBROLA lives in Debian's contrib/non-free
# components, which a default Debian install does not enable, so this script
# adds a sources list of its own (lipstream-tts.sources) with those components
# for the machine's release.  Idempotent; needs root (or sudo).
#
# Nothing here is needed to *run* lipstream: the live server only uses piper
# and espeak-ng, which come from PyPI.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "error: run as root (or install sudo)" >&2; exit 1; }
  SUDO=sudo
fi

# shellcheck disable=SC1091
. /etc/os-release
codename=${VERSION_CODENAME:-}
if [ "${ID:-}" != debian ] || [ -z "$codename" ]; then
  echo "error: this script knows Debian only (found ${PRETTY_NAME:-unknown})." >&2
  echo "       install flite, festival, festvox-us-slt-hts, mbrola and mbrola-us1..3 yourself." >&2
  exit 1
fi

list=/etc/apt/sources.list.d/lipstream-tts.sources
if [ ! -f "$list" ]; then
  # Reuse the mirror this machine already uses for its main component, so the
  # script works behind whatever mirror or proxy the machine is configured for.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$mirror" ]; then
    echo "error: no Debian mirror found in the apt sources; add contrib and non-free yourself" >&2
    exit 1
  fi
  # bookworm split firmware into non-free-firmware; mbrola voices are in non-free,
  # the mbrola program in contrib.
  $SUDO tee "$list" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: $codename
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

$SUDO apt-get update -qq
want=(flite festival festvox-us-slt-hts espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3)
# en1 (British male) exists in some releases only.
if apt-cache show mbrola-en1 >/dev/null 2>&1; then want+=(mbrola-en1); fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
echo "installed: ${want[*]}"
