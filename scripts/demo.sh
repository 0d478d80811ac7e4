#!/usr/bin/env bash
# make demo: the station end to end on the bundled virtual reader and card.
# pcscd runs with vpcd's readers ("Virtual PCD 00 00" on TCP 35963, "00 01"
# on 35964, see scripts/pcscd-up.sh); cardsim puts a virtual social
# security card into the first; sscard reads it, checks it, and works its PIN.
set -euo pipefail
cd "$(dirname "$0")/.."
B=./bin
mkdir -p .demo
READER="Virtual PCD 00 00"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

pkill -f "$B/cardsim --port 35963" 2>/dev/null || true
"$B/cardsim" --port 35963 --card sample-v2 --control 127.0.0.1:35990 >.demo/cardsim.log 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  "$B/sscard" readers --json 2>/dev/null | grep -q '"card_present": true' && break
  sleep 0.1
done

step "Readers and cards" "$B/sscard" readers
step "A raw APDU: SELECT the social security application (SSSE)" \
  "$B/sscard" apdu --reader "$READER" 00A404000F7378312E73682EC9E7BBE1B1A3D5CF00
step "Decode the card's ATR" "$B/sscard" atr "$("$B/sscard" readers --json | sed -n 's/.*"atr": "\([0-9A-F]*\)".*/\1/p' | head -1)"
step "Read the card" "$B/sscard" info --reader "$READER" --full
step "The standard iReadCardBas string" "$B/sscard" info --reader "$READER" --ireadcardbas
step "Is the card genuine, and valid?" "$B/sscard" verify-card --reader "$READER"
step "PIN tries left" "$B/sscard" pin retries --reader "$READER"
echo
echo "== A wrong PIN (typed on a PIN pad or keyboard; here from standard input)"
echo "$ printf '000000\n' | sscard pin verify --pin-stdin"
printf '000000\n' | "$B/sscard" pin verify --reader "$READER" --pin-stdin || true
step "Tries left after it" "$B/sscard" pin retries --reader "$READER"
echo
echo "== The right PIN, which restores the tries"
echo "$ printf '<the holder's PIN>\n' | sscard pin verify --pin-stdin"
printf '135790\n' | "$B/sscard" pin verify --reader "$READER" --pin-stdin
echo
echo "Demo done. cardsim's log: .demo/cardsim.log"
