#!/usr/bin/env bash
# make demo: the station end to end on the bundled virtual reader and card.
#
# The system pcscd runs with vpcd's two virtual readers (scripts/pcscd-up.sh):
# "Virtual PCD 00 00" (TCP 35963) takes the virtual social security card,
# "Virtual PCD 00 01" (TCP 35964) the virtual PSAM holding the issuer keys.
# sscard then does what a counter does: read, issue on the spot, activate a
# delivered card and set its PIN, block a card reported lost.
set -euo pipefail
cd "$(dirname "$0")/.."
B=./bin
CARD="Virtual PCD 00 00"
CFG=(--config demo/station.json)
rm -rf .demo && mkdir -p .demo/data

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
fails() { printf '$ %s\n' "$*"; if "$@"; then echo "(unexpected success)"; exit 1; fi; }

SIM=""
start_card() { # $1: a built-in cardsim card (cardsim --list-cards)
  [ -n "$SIM" ] && { kill "$SIM" 2>/dev/null || true; wait "$SIM" 2>/dev/null || true; }
  for _ in $(seq 50); do "$B/sscard" readers --json 2>/dev/null | grep -q '"card_present": true' || break; sleep 0.1; done
  "$B/cardsim" --port 35963 --card "$1" --psam-port 35964 --control 127.0.0.1:35990 >>.demo/cardsim.log 2>&1 &
  SIM=$!
  for _ in $(seq 100); do
    [ "$("$B/sscard" readers --json 2>/dev/null | grep -c '"card_present": true')" = 2 ] && return 0
    sleep 0.1
  done
  echo "cardsim did not come up; see .demo/cardsim.log" >&2; exit 1
}
trap '[ -n "$SIM" ] && kill $SIM 2>/dev/null || true' EXIT

say "A blank card in reader 0, the PSAM (issuer keys) in reader 1"
start_card blank-v2
show "$B/sscard" readers
show "$B/sscard" atr "$("$B/sscard" readers --json | sed -n 's/.*"atr": "\([0-9A-F]*\)".*/\1/p' | head -1)"
say "Raw APDUs: SELECT 3F00, then the social security application (SSSE) by name; the T=0 card answers 61xx and GET RESPONSE brings the answer"
show "$B/sscard" apdu --reader "$CARD" -v 00A40000023F00 00A404000F7378312E73682EC9E7BBE1B1A3D5CF00
say "Read the blank card"
show "$B/sscard" info --reader "$CARD" "${CFG[@]}"

say "Issue on the spot: personalize (keys from the PSAM), read back, lock"
show "$B/sscard" personalize --reader "$CARD" "${CFG[@]}" --holder demo/holder-v2.json --lock
show "$B/sscard" info --reader "$CARD" "${CFG[@]}" --full
show "$B/sscard" info --reader "$CARD" "${CFG[@]}" --ireadcardbas
show "$B/sscard" verify-card --reader "$CARD" "${CFG[@]}"
say "A locked card refuses a second personalization"
fails "$B/sscard" personalize --reader "$CARD" "${CFG[@]}" --holder demo/holder-v2.json

say "A centrally made card delivered to the counter: activate it, the holder sets a PIN"
start_card delivered-v2
echo "$ printf '<new PIN>\n<new PIN>\n' | sscard activate --pin-stdin"
printf '271828\n271828\n' | "$B/sscard" activate --reader "$CARD" "${CFG[@]}" --pin-stdin
echo "$ printf '<other PIN>\n<other PIN>\n' | sscard activate --pin-stdin   # once more: nothing is written"
printf '314159\n314159\n' | "$B/sscard" activate --reader "$CARD" "${CFG[@]}" --pin-stdin
show "$B/sscard" pin retries --reader "$CARD" "${CFG[@]}"
echo "$ printf '<wrong PIN>\n' | sscard pin verify --pin-stdin"
printf '000000\n' | "$B/sscard" pin verify --reader "$CARD" "${CFG[@]}" --pin-stdin || true
show "$B/sscard" pin retries --reader "$CARD" "${CFG[@]}"
echo "$ printf '<the PIN>\n' | sscard pin verify --pin-stdin"
printf '271828\n' | "$B/sscard" pin verify --reader "$CARD" "${CFG[@]}" --pin-stdin

say "The card is reported lost: block it for good"
show "$B/sscard" block --reader "$CARD" "${CFG[@]}" --permanent
fails "$B/sscard" info --reader "$CARD" "${CFG[@]}"

say "The journal of multi-step operations"
show "$B/sscard" journal "${CFG[@]}"

# ---------------------------------------------------------------------------
# stationd: the counter story over HTTP (curl plays the counter software).
say "stationd: the local service counter software calls (http://127.0.0.1:18420)"
STATIOND_PID=""
trap '[ -n "$SIM" ] && kill $SIM 2>/dev/null || true; [ -n "$STATIOND_PID" ] && kill $STATIOND_PID 2>/dev/null || true' EXIT
SD=.demo/stationd
mkdir -p "$SD"
cp demo/station.json "$SD/station.json"
echo '$ stationd token add --name counter-1 --role counter --origin https://counter.example.cn   # printed once; the file keeps its hash'
COUNTER_TOKEN=$("$B/stationd" token add --config "$SD/station.json" --name counter-1 --role counter --origin https://counter.example.cn)
BANK_TOKEN=$("$B/stationd" token add --config "$SD/station.json" --name bank-1 --role bank)
ADMIN_TOKEN=$("$B/stationd" token add --config "$SD/station.json" --name admin-1 --role admin)
TECH_TOKEN=$("$B/stationd" token add --config "$SD/station.json" --name tech-1 --role technician)
start_card delivered-v2
STATIOND_DATA_DIR="$SD/data" STATIOND_LOG_FORMAT=json "$B/stationd" serve --config "$SD/station.json" --listen 127.0.0.1:18420 2>"$SD/stationd.log" &
STATIOND_PID=$!
for _ in $(seq 100); do curl -fs http://127.0.0.1:18420/v1/ready >/dev/null 2>&1 && break; sleep 0.1; done
URL=http://127.0.0.1:18420/v1
api() { # METHOD PATH TOKEN [BODY] [extra curl args]
  local m=$1 p=$2 tok=$3 body=${4:-}; shift 4 || shift $#
  printf '$ curl -X %s %s%s %s\n' "$m" "$URL" "$p" "${body:+-d '$body'}"
  if [ -n "$body" ]; then
    curl -s -X "$m" "$URL$p" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -H 'Prefer: wait=30' "$@" -d "$body"
  else
    curl -s -X "$m" "$URL$p" -H "Authorization: Bearer $tok" "$@"
  fi
  echo
}
show curl -s "$URL/health"; echo
api GET /readers "$TECH_TOKEN"

say "Events (SSE): a single-use ticket, then the stream in the background"
TICKET=$(curl -s -X POST "$URL/event-tickets" -H "Authorization: Bearer $COUNTER_TOKEN" -H 'Content-Type: application/json' -d '{}' | sed -n 's/.*"ticket":"\([^"]*\)".*/\1/p')
curl -sN "$URL/events?ticket=$TICKET" >"$SD/events.txt" &
EVENTS_PID=$!

say "The counter reads the delivered card: fields and the legacy iReadCardBas string"
api POST /card/read "$COUNTER_TOKEN" '{}'
say "The holder sets a PIN: activation (Idempotency-Key: a retry never touches the card twice)"
KEY=demo-activate-$$
api POST /card/activate "$COUNTER_TOKEN" '{"pin":"271828","pin_confirm":"271828"}' -H "Idempotency-Key: $KEY"
echo "# the same request again (a browser timeout retried): the stored answer, Idempotent-Replayed, 0 APDUs"
curl -s -D - -o /dev/null -X POST "$URL/card/activate" -H "Authorization: Bearer $COUNTER_TOKEN" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $KEY" -d '{"pin":"271828","pin_confirm":"271828"}' | grep -i '^idempotent-replayed' || true
say "A bank teller types a wrong PIN: problem+json with tries_left and the legacy code"
api POST /card/pin/verify "$BANK_TOKEN" '{"pin":"000000"}' -H "Idempotency-Key: demo-wrong-$$"

say "The virtual card is pulled and put back: the event stream sees it"
exec 3<>/dev/tcp/127.0.0.1/35990; echo "remove 35963" >&3; head -1 <&3
sleep 1
echo "insert 35963" >&3; head -1 <&3; exec 3>&-
sleep 1.5
kill "$EVENTS_PID" 2>/dev/null || true
grep -E '^(event|data):' "$SD/events.txt" | grep -A1 -E 'card\.(removed|inserted)' || cat "$SD/events.txt"

say "The audit trail: one record per card touch, hash-chained (no PIN, no full ID number)"
api GET /audit "$ADMIN_TOKEN"
kill -TERM "$STATIOND_PID"; wait "$STATIOND_PID" 2>/dev/null || true; STATIOND_PID=""
show "$B/sscard" audit verify --store "$SD/data/station.db"
echo "stationd's log: $SD/stationd.log"
echo
echo "Demo done. cardsim's log: .demo/cardsim.log"
