#!/usr/bin/env bash
# Memory soak (docs/performance.md): bccguard under steady load for
# SOAK_DURATION (default 10m), its resident memory sampled every
# SOAK_EVERY seconds (default 30). It fails when the last sample is more
# than SOAK_GROWTH_MAX percent (default 20) above the first sample taken
# after a one-minute warm-up, or when any message came back unconverted.
#   SOAK_SESSIONS=16  SOAK_TO=3  SOAK_DURATION=10m  SOAK_EVERY=30
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
SESSIONS=${SOAK_SESSIONS:-16}
TO=${SOAK_TO:-3}
DURATION=${SOAK_DURATION:-10m}
EVERY=${SOAK_EVERY:-30}
GROWTH_MAX=${SOAK_GROWTH_MAX:-20}

WORK=$(mktemp -d /var/tmp/bccguard-soak.XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/bccguard" ./cmd/bccguard
go build -o "$WORK/milterbench" ./cmd/milterbench
sock=$WORK/bccguard.sock
"$WORK/bccguard" serve --allow-root --config deploy/bench/bccguard.yaml --listen "unix:$sock" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "soak: bccguard did not start" >&2; exit 1; }

"$WORK/milterbench" -addr "unix:$sock" -sessions "$SESSIONS" -to "$TO" -duration "$DURATION" -json >"$WORK/bench.json" 2>"$WORK/bench.err" &
bench=$!
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
start=$(date +%s)
echo "| elapsed (s) | VmRSS (KiB) |"
echo "|---:|---:|"
base=""
while kill -0 "$bench" 2>/dev/null; do
	sleep "$EVERY"
	kill -0 "$bench" 2>/dev/null || break
	now=$(( $(date +%s) - start ))
	r=$(rss)
	echo "| $now | $r |"
	if [ -z "$base" ] && [ "$now" -ge 60 ]; then base=$r; fi
	last=$r
done
wait "$bench" || { echo "soak: milterbench failed: $(cat "$WORK/bench.err")" >&2; exit 1; }
echo
echo "milterbench: $(cat "$WORK/bench.json")"
jf() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$WORK/bench.json"; }
[ "$(jf messages)" = "$(jf to_changed)" ] && [ "$(jf errors)" = 0 ] ||
	{ echo "soak: FAIL: not every message converted, or errors" >&2; exit 1; }
echo "VmHWM: $(awk '/^VmHWM:/ {print $2, $3}' "/proc/$pid/status")"
if [ -n "$base" ]; then
	growth=$(( (last - base) * 100 / base ))
	echo "growth after warm-up: ${growth}% (${base} -> ${last} KiB)"
	[ "$growth" -le "$GROWTH_MAX" ] || { echo "soak: FAIL: memory grew by ${growth}%" >&2; exit 1; }
fi
echo "soak: PASS"
