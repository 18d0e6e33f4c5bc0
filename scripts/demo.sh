#!/usr/bin/env bash
# The README's main-job command: installs what tollgate needs, builds it, and runs the appliance on its
# embedded default configuration (a loopback demo): a "cloud" user agent (SIPp) answers on 127.0.0.1:5080,
# a "carrier" (SIPp) places calls to the corporate number 15551234567 through tollgate on 127.0.0.1:5060;
# tollgate checks the source, translates the number to +18005551234, routes the call to the cloud trunk and
# relays it end to end. The cloud side fails the call if the number it receives is not the translated one.
#   CALLS=20 RATE=5 HOLD_MS=2000 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20}; RATE=${RATE:-5}; HOLD_MS=${HOLD_MS:-2000}
bash scripts/install-deps.sh
cargo build --release --bin tollgate
run=$(mktemp -d /tmp/tollgate-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "== starting tollgate on the embedded default config (log: $run/tollgate.log)"
target/release/tollgate run > "$run/tollgate.log" 2>&1 & pids+=($!)
sleep 1
kill -0 "${pids[0]}" || { cat "$run/tollgate.log"; exit 1; }

echo "== cloud UAS (SIPp) on 127.0.0.1:5080"
sipp -sf tests/sipp/uas_answer.xml -i 127.0.0.1 -p 5080 -nostdin -trace_err \
     -error_file "$run/uas_errors.log" > "$run/uas.log" 2>&1 & pids+=($!)
sleep 0.5

echo "== carrier UAC (SIPp): $CALLS calls to 15551234567 at $RATE cps, ${HOLD_MS} ms each"
set +e
timeout $((CALLS / RATE + HOLD_MS / 1000 + 30)) \
  sipp -sf tests/sipp/uac_call.xml -i 127.0.0.1 -p 5062 -s 15551234567 127.0.0.1:5060 \
       -m "$CALLS" -r "$RATE" -d "$HOLD_MS" -nostdin -trace_stat -stf "$run/uac_stats.csv" \
       -trace_err -error_file "$run/uac_errors.log" > "$run/uac.log" 2>&1
rc=$?
set -e
{ head -n 1 "$run/uac_stats.csv"; tail -n 1 "$run/uac_stats.csv"; } | python3 -c '
import csv,sys
rows=list(csv.reader(sys.stdin, delimiter=";"))
h,v=rows[0],rows[-1]
d=dict(zip(h,v))
print("calls: total %s, successful %s, failed %s" % (d.get("TotalCallCreated"), d.get("SuccessfulCall(C)"), d.get("FailedCall(C)")))
print("response time (INVITE -> 200) avg: %s" % d.get("ResponseTime1(C)"))
' 2>/dev/null || true
echo "== tollgate log (last lines)"
tail -n 15 "$run/tollgate.log"
if [ "$rc" -eq 0 ]; then echo "demo: every call answered by the cloud with the translated number"; else
  echo "demo: SIPp exit code $rc (see $run)"; exit "$rc"; fi
