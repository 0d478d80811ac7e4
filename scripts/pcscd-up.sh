#!/usr/bin/env bash
# Makes sure the system pcscd runs with vpcd's two virtual readers
# ("Virtual PCD 00 00" on TCP 35963 and "Virtual PCD 00 01" on 35964), for
# `make demo` and for technicians trying the station on the virtual card.
# (The tests do not use this daemon: each test process runs a private one;
# see pcsc/pcsctest.)
#
# An earlier version of this script added more vpcd entries to
# /etc/reader.conf.d; vpcd 3.3 cannot serve them (its slots collide), so
# that file is removed again and pcscd restarted if it had loaded it.
set -euo pipefail
old=/etc/reader.conf.d/ssstation-vpcd
restart=0
if [ -e "$old" ]; then
  rm -f "$old"
  restart=1
fi
# Listening on vpcd's port 35963 (0x8C7B)? Read /proc rather than connect:
# a connection to a vpcd port is a card insertion.
listening() { grep -qiE '^ *[0-9]+: [0-9A-F]+:8C7B [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
if pgrep -x pcscd >/dev/null; then
  if [ $restart = 0 ] && listening; then
    exit 0
  fi
  echo "pcscd-up: restarting pcscd to load the vpcd readers"
  pkill -x pcscd || true
  for _ in $(seq 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
if [ ! -e /etc/reader.conf.d/vpcd ]; then
  echo "pcscd-up: /etc/reader.conf.d/vpcd is missing: reinstall vsmartcard-vpcd" >&2
  exit 1
fi
rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid 2>/dev/null || true
pcscd
for _ in $(seq 100); do
  if listening && [ -S /run/pcscd/pcscd.comm ]; then
    echo "pcscd-up: pcscd runs with the vpcd readers \"Virtual PCD 00 00\" (TCP 35963) and \"Virtual PCD 00 01\" (TCP 35964)"
    exit 0
  fi
  sleep 0.1
done
echo "pcscd-up: pcscd did not come up with its virtual readers" >&2
exit 1
