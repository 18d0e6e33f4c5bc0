#!/bin/sh
# Paced G.711 streams through rtpengine (userspace forwarding, all threads pinned to CPU1), generator + sink
# pinned to CPU0, fresh calls per step, 2 s warm-up, 5 s measured. Prints one result block per step.
# Usage: [GEN_OPTS=--count-only] scripts/rtpengine-compare.sh [BIN] [CALLS...]   (default: target/release/tollgate-load 250 500)
set -eu
BIN=${1:-target/release/tollgate-load}
[ $# -gt 0 ] && shift
STEPS=${*:-250 500}
command -v rtpengine >/dev/null || { echo "rtpengine not installed (apt-get install rtpengine-daemon)"; exit 1; }
DIR=$(mktemp -d /tmp/tgload-cmp.XXXXXX)
NG=127.0.0.1:22399
cat > "$DIR/rtpengine.conf" <<CONF
[rtpengine]
table = -1
interface = 127.0.0.1
listen-ng = $NG
foreground = true
log-stderr = true
log-level = 4
port-min = 40000
port-max = 45999
timeout = 60
delete-delay = 0
CONF
rtpengine --config-file="$DIR/rtpengine.conf" > "$DIR/rtpengine.log" 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; wait $RPID 2>/dev/null; rm -rf "$DIR"' EXIT INT TERM
sleep 1
taskset -a -cp 1 $RPID > /dev/null
for N in $STEPS; do
    P=cmp$N
    "$BIN" rtpengine-setup --ng $NG --calls "$N" --prefix $P --base 20000 --out "$DIR/$P.txt"
    "$BIN" gen --streams "$DIR/$P.txt" --duration 2 --gen-cpu 0 --no-sink > /dev/null
    echo "== $N calls, $((N * 2)) streams at 50 pps = $((N * 100)) pps offered"
    "$BIN" gen --streams "$DIR/$P.txt" --duration 5 --gen-cpu 0 --sink-cpu 0 --watch-pid $RPID ${GEN_OPTS:-}
    "$BIN" rtpengine-delete --ng $NG --calls "$N" --prefix $P
done
