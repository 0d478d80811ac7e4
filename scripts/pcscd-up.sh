#!/usr/bin/env bash
# Makes sure pcscd runs with eight virtual readers: vpcd's own two
# ("Virtual PCD 00 00"/"00 01" on TCP 35963/35964) and three more entries
# (B, C, D on 35965..35970), so parallel test packages each get a reader.
# pcscd reads /etc/reader.conf.d only at start: it is restarted when the
# file is new or when it runs without those readers.
set -euo pipefail
conf=/etc/reader.conf.d/ssstation-vpcd
want=$(cat <<'CONF'
# Written by ssstation scripts/pcscd-up.sh: extra vpcd virtual readers.
FRIENDLYNAME "Virtual PCD B"
DEVICENAME   /dev/null:0x8C7D
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7D

FRIENDLYNAME "Virtual PCD C"
DEVICENAME   /dev/null:0x8C7F
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7F

FRIENDLYNAME "Virtual PCD D"
DEVICENAME   /dev/null:0x8C81
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C81
CONF
)
# Listening on vpcd's last port (35970 = 0x8C82)? Read /proc rather than
# connect: a connection to a vpcd port is a card insertion.
listening() { grep -qiE '^ *[0-9]+: [0-9A-F]+:8C82 [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
changed=0
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "pcscd-up: $conf must be written as root" >&2; exit 1
  fi
  printf '%s\n' "$want" > "$conf"
  changed=1
fi
running=0
pgrep -x pcscd >/dev/null && running=1
if [ $running = 1 ] && [ $changed = 0 ]; then
  # Running with our readers? Port 35970 is the last one.
  if listening; then
    exit 0
  fi
fi
if [ $running = 1 ]; then
  echo "pcscd-up: restarting pcscd to load the virtual readers"
  pkill -x pcscd || true
  for _ in $(seq 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid 2>/dev/null || true
pcscd
for _ in $(seq 100); do
  if listening && [ -S /run/pcscd/pcscd.comm ]; then
    echo "pcscd-up: pcscd runs with 8 virtual readers"
    exit 0
  fi
  sleep 0.1
done
echo "pcscd-up: pcscd did not come up with its virtual readers" >&2
exit 1
