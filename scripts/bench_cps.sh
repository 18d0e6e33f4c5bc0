#!/usr/bin/env bash
# Calls/s on loopback with SIPp (INVITE/100/180/200/ACK/BYE/200, bypass media) through tollgate and, in the
# same run with the same SIPp scenarios, rate and UAS, through Kamailio as a stateful proxy doing the same
# job (source check, number translation, Record-Route, relay to the cloud): CPU per completed call from
# /proc/PID/stat (utime+stime; all of Kamailio's processes). Writes target/bench-report/cps.md, appends
# cps.jsonl (one line per proxy and rate) and draws cps.png from all rates run so far.
# usage: scripts/bench_cps.sh RATE SECONDS [HOLD_MS]    (needs target/release/tollgate, sipp, kamailio)
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
KPORT=$((PORT + 10))
cat > "$DIR/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
children=2
listen=udp:127.0.0.1:$KPORT
disable_tcp=yes
auto_aliases=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (src_ip != 127.0.0.1) { sl_send_reply("403", "Forbidden"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK") && t_check_trans()) { t_relay(); }
        exit;
    }
    if (is_method("INVITE")) {
        if (\$rU =~ "^\\+?1?5551234567\$") { \$rU = "+18005551234"; } else { sl_send_reply("404", "Not Found"); exit; }
        record_route();
    }
    \$du = "sip:127.0.0.2:$((PORT + 1))";
    t_relay();
}
CFG
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
# ticks PID...: utime+stime summed over the processes
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
cd "$DIR"
# run NAME PORT PID...: one SIPp run through the proxy on PORT, CPU of the PIDs
run() {
  local name=$1 port=$2; shift 2
  sipp -sf "$ROOT/tests/sipp/uas_answer.xml" -i 127.0.0.2 -p $((PORT + 1)) -nostdin -buff_size 4194304 \
    -m "$CALLS" > "uas-$name.out" 2>&1 & local uas=$!; pids+=("$uas")
  sleep 0.3
  local t0; t0=$(ticks "$@")
  local rc=0
  timeout $((SECS + 40)) sipp -sf "$ROOT/tests/sipp/uac_call.xml" -i 127.0.0.1 -p $((PORT + 3)) "127.0.0.1:$port" \
    -s 15551234567 -r "$RATE" -m "$CALLS" -d "$HOLD" -l $((RATE * 4)) -nostdin -buff_size 4194304 \
    -trace_stat -stf "stat-$name.csv" > "uac-$name.out" 2>&1 || rc=$?
  local t1; t1=$(ticks "$@")
  kill "$uas" 2>/dev/null || true; wait "$uas" 2>/dev/null || true
  local ok fail us
  ok=$(grep -a "Successful call" "uac-$name.out" | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
  fail=$(grep -a "Failed call" "uac-$name.out" | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
  us=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="${ok:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "n/a" }')
  echo "$name rate=$RATE cps secs=$SECS hold=${HOLD}ms sipp_rc=$rc ok=${ok:-?} failed=${fail:-?} cpu_ticks=$((t1 - t0)) us_per_call=$us"
  echo "| $name | $RATE | ${ok:-?} | ${fail:-?} | $us |" >> "$DIR/rows.md"
  # One JSON line per proxy and rate, accumulated across runs: cps.png plots failed calls and CPU vs rate.
  mkdir -p "$ROOT/target/bench-report"
  cpu=$([ "$us" = "n/a" ] && echo null || echo "$us")
  echo "{\"proxy\":\"$name\",\"offered_cps\":$RATE,\"successful\":${ok:-0},\"failed\":${fail:-0},\"cpu_us_per_call\":$cpu}" \
    >> "$ROOT/target/bench-report/cps.jsonl"
}
"$BIN" run --config "$DIR/tg.toml" 2> "$DIR/tg.log" & TG=$!; pids+=("$TG")
sleep 0.5
run tollgate "$PORT" "$TG"
kill "$TG"; wait "$TG" 2>/dev/null || true
if command -v kamailio > /dev/null; then
  kamailio -DD -E -f "$DIR/kamailio.cfg" -P "$DIR/kam.pid" 2> "$DIR/kam.log" & KAM=$!; pids+=("$KAM")
  sleep 1
  kill -0 "$KAM" || { cat "$DIR/kam.log"; exit 1; }
  # shellcheck disable=SC2046
  run kamailio "$KPORT" $(pgrep -P "$KAM") "$KAM"
else
  echo "kamailio not installed (apt-get install kamailio): no baseline"
fi
mkdir -p "$ROOT/target/bench-report"
{ echo "# cps: tollgate (B2BUA) vs Kamailio (stateful proxy), same SIPp scenarios, one run"
  echo
  echo "$RATE calls/s for $SECS s, hold ${HOLD} ms, loopback, bypass media; CPU = utime+stime per completed call."
  echo
  echo "| proxy | offered cps | successful | failed | CPU µs per call |"
  echo "|---|---|---|---|---|"
  cat "$DIR/rows.md"
  echo
  echo "Command: \`scripts/bench_cps.sh $RATE $SECS $HOLD\`"; } > "$ROOT/target/bench-report/cps.md"
# cps.png from every rate run so far (run the script at several rates for a curve).
if command -v cargo > /dev/null; then
  (cd "$ROOT" && cargo bench -q --bench report) || echo "no plots (see above)"
fi
