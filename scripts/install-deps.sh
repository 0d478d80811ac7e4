#!/usr/bin/env bash
# Installs the system packages the station needs on Debian, once: pcscd and
# its client library, the vsmartcard virtual reader driver, pcsc-tools, gcc
# for cgo, Chromium and a CJK font for the browser tests, procps (pgrep) for
# scripts/pcscd-up.sh and curl for the demo. The one list: .ci/run and every
# make target come through here.
set -euo pipefail
pkgs=(pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools gcc make chromium fonts-wqy-microhei procps curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
