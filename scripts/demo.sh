#!/usr/bin/env bash
# The README's main-job command: installs what tollgate needs, builds it, and runs `tollgate lab`: the
# deployment on this box. A carrier, the SBC and a cloud (the Amazon Connect / Chime Voice Connector side) in
# network namespaces joined by veth; tollgate starts in the SBC namespace on the embedded default config moved
# onto those addresses (XDP media where it attaches, else sockets, and it says which); the carrier calls the
# corporate number 15551234567, tollgate admits it by ACL, translates it to +18005551234, routes it to the
# cloud and anchors the media (plain RTP to the carrier, SRTP to the cloud); audio runs both ways with a DTMF
# digit per call, the calls hang up, and a report is printed. Exit 0 when every check in it passed.
#   CALLS=20 RATE=10 DURATION=10 MODE=auto sudo -E bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20}; RATE=${RATE:-10}; DURATION=${DURATION:-10}; MODE=${MODE:-auto}
if [ "$(id -u)" -ne 0 ]; then
  echo "the demo builds network namespaces and needs root: sudo bash scripts/demo.sh" >&2
  exit 2
fi
bash scripts/install-deps.sh
cargo build --release --bin tollgate
exec target/release/tollgate lab --calls "$CALLS" --rate "$RATE" --duration "$DURATION" --mode "$MODE"
