#!/usr/bin/env bash
# Calls/s through tollgate on loopback with SIPp (INVITE/100/180/200/ACK/BYE/200, bypass media) and
# tollgate's CPU per completed call from /proc/PID/stat (utime+stime).
# usage: scripts/bench_cps.sh RATE SECONDS [HOLD_MS]    (needs target/release/tollgate and sipp)
set -euo pipefail
RATE=${1:-1000}; SECS=${2:-10}; HOLD=${3:-500}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/tollgate
DIR=$(mktemp -d /tmp/tg-bench.XXXXXX)
PORT=$((26000 + RANDOM % 2000))
CALLS=$((RATE * SECS))
cat > "$DIR/tg.toml" <<CFG
[node]
name = "bench"
[[listen]]
transport = "udp"
address = "127.0.0.1:$PORT"
[media]
mode = "bypass"
[log]
level = "warn"
[[trunk]]
name = "carrier"
acl = ["127.0.0.1/32"]
[[trunk]]
name = "cloud"
targets = ["sip:127.0.0.2:$((PORT + 1))"]
health = { ping_interval_s = 0 }
headers = { allow = ["X-Context"] }
[[rule]]
trunk = "carrier"
match = '^\+?1?5551234567$'
replace = "+18005551234"
[[route]]
from = "carrier"
to = "cloud"
CFG
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" run --config "$DIR/tg.toml" 2> "$DIR/tg.log" & TG=$!; pids+=("$TG")
sleep 0.5
cd "$DIR"
sipp -sf "$ROOT/tests/sipp/uas_answer.xml" -i 127.0.0.2 -p $((PORT + 1)) -nostdin -buff_size 4194304 \
  -m "$CALLS" > uas.out 2>&1 & UAS=$!; pids+=("$UAS")
sleep 0.3
ticks() { awk '{print $14 + $15}' "/proc/$TG/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks)
timeout $((SECS + 40)) sipp -sf "$ROOT/tests/sipp/uac_call.xml" -i 127.0.0.1 -p $((PORT + 3)) "127.0.0.1:$PORT" \
  -s 15551234567 -r "$RATE" -m "$CALLS" -d "$HOLD" -l $((RATE * 4)) -nostdin -buff_size 4194304 \
  -trace_stat -stf stat.csv > uac.out 2>&1 && RC=0 || RC=$?
T1=$(ticks)
OK=$(grep -a "Successful call" uac.out | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
FAIL=$(grep -a "Failed call" uac.out | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
US=$(awk -v t=$((T1 - T0)) -v hz="$HZ" -v n="${OK:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "n/a" }')
echo "rate=$RATE cps secs=$SECS hold=${HOLD}ms sipp_rc=$RC ok=${OK:-?} failed=${FAIL:-?} tollgate_cpu_ticks=$((T1 - T0)) us_per_call=$US"
