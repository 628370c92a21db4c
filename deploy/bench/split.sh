#!/usr/bin/env bash
# Split part of the benchmark (docs/performance.md): how fast bccguard hands
# copies back to Postfix with delivery: split, side by side with smtp-source
# injecting as many single-recipient messages of the same size into the
# same reinjection service (the most any client could do there).
#
#   deploy/bench/split.sh BCCGUARD_BINARY SPLITLOAD_BINARY WORKDIR
#
# run.sh calls it; it can also run alone (as root, with Debian's postfix
# package). Environment, all optional:
#   BENCH_SPLIT_MESSAGES  messages per run (40), each to...
#   BENCH_SPLIT_RCPTS     ...this many outside To recipients (50)
#   BENCH_SPLIT_SESSIONS  concurrent sessions, on both sides (4)
#   BENCH_SPLIT_BODY      body bytes (2048)
#   BENCH_SPLIT_ROUNDS    rounds (BENCH_ROUNDS or 3), order alternating
#   BENCH_SPLIT_RESULTS   file to append "key value" result lines to
#
# One private Postfix: smtpd with bccguard (delivery: split), the
# reinjection service of deploy/postfix/master.cf (no milter), both relaying
# to smtp-sink. The sink's dump is checked: every copy shows exactly its own
# recipient. bccguard's peak RSS (VmHWM) is reported too.
set -euo pipefail
export PATH="/usr/sbin:/sbin:$PATH"
[ $# -eq 3 ] || { echo "usage: $0 BCCGUARD_BINARY SPLITLOAD_BINARY WORKDIR" >&2; exit 2; }
BCCGUARD=$1 LOAD=$2 WORK=$3
M=${BENCH_SPLIT_MESSAGES:-40}
R=${BENCH_SPLIT_RCPTS:-50}
S=${BENCH_SPLIT_SESSIONS:-4}
BODY=${BENCH_SPLIT_BODY:-2048}
ROUNDS=${BENCH_SPLIT_ROUNDS:-${BENCH_ROUNDS:-3}}
RESULTS=${BENCH_SPLIT_RESULTS:-/dev/null}
N=$((M * R))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

die() { echo "split.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (postfix start)"
if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then die "needs Debian's postfix package"; fi
PF=$(mktemp -d "$WORK/split.XXXXXX")
chmod 755 "$WORK" "$PF"
# shellcheck source=deploy/bench/pflib.sh
. "$(dirname "$0")/pflib.sh"
STATE=$PF/state
mkdir -m 755 "$STATE"
SMTP_PORT=$(free_port) REINJECT_PORT=$(free_port) SINK_PORT=$(free_port) MILTER_PORT=$(free_port)
DUMP=$(mktemp -d "${BENCH_SHM:-/dev/shm}/bccguard-split.XXXXXX" 2>/dev/null || mktemp -d "$PF/dump.XXXXXX")
chown nobody "$DUMP"

SINK_PID='' BCC_PID=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	set +e
	[ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
	[ -n "$BCC_PID" ] && kill "$BCC_PID" 2>/dev/null
	pf_stop
	wait 2>/dev/null
	rm -rf "$PF" "$DUMP"
}
trap cleanup EXIT

pf_create "$SMTP_PORT" "$SINK_PORT" "inet:127.0.0.1:$MILTER_PORT"
# The reinjection service exactly as shipped, on its own port.
entry=$(awk '/^127\.0\.0\.1:10026 inet/ { on = 1 } on && /^[^ #]/ && !/^127\.0\.0\.1:10026/ { on = 0 } on && /^ +-o / { printf " %s %s", $1, $2 }' "$ROOT/deploy/postfix/master.cf")
[ -n "$entry" ] || die "no reinjection service in deploy/postfix/master.cf"
postconf -c "$CONF" -Me "127.0.0.1:$REINJECT_PORT/inet=127.0.0.1:$REINJECT_PORT inet n - n - - smtpd$entry"
pf_start
wait_port "$SMTP_PORT"
wait_port "$REINJECT_PORT"

cat >"$PF/bccguard.yaml" <<EOF
internal_domains: [city.example.jp]
reinject:
  address: inet:127.0.0.1:$REINJECT_PORT
policy:
  delivery: split
split:
  state_dir: $STATE
  max_recipients: 1000
EOF
serve_flags=()
"$BCCGUARD" serve --help 2>&1 | grep -q -- --allow-root && serve_flags+=(--allow-root)
"$BCCGUARD" serve "${serve_flags[@]}" --config "$PF/bccguard.yaml" --listen "inet:127.0.0.1:$MILTER_PORT" >"$WORK/bccguard-split.log" 2>&1 &
BCC_PID=$!
wait_port "$MILTER_PORT"

# A single-recipient message the size of a copy, for smtp-source.
MSG=$PF/single.txt
{
	printf 'From: Staff <staff@city.example.jp>\nTo: rcpt@ext.example\nSubject: split benchmark\n'
	printf 'Date: Tue, 04 Mar 2025 10:15:00 +0900\nMessage-ID: <single@city.example.jp>\nMIME-Version: 1.0\n'
	printf 'Content-Type: text/plain; charset=UTF-8\nX-BCCGuard: split; to=50 external=50 moved=50 copies=50\n\n'
	for _ in $(seq $((BODY / 57))); do printf 'The quick brown fox jumps over the lazy dog. Body text.\n'; done
} >"$MSG"

# run MODE ROUND: writes "copies/s checked" to $PF/result.
run() {
	local mode=$1 round=$2 dump="$DUMP/$1-$2.txt" t0 t1 ok
	smtp-sink -u nobody -M "$N" -D "$dump" "127.0.0.1:$SINK_PORT" 1024 >/dev/null 2>&1 &
	SINK_PID=$!
	wait_port "$SINK_PORT"
	t0=$(date +%s.%N)
	if [ "$mode" = bccguard ]; then
		"$LOAD" -addr "127.0.0.1:$SMTP_PORT" -messages "$M" -rcpts "$R" -sessions "$S" -body "$BODY" -tag "r$round" >/dev/null ||
			die "splitload failed (round $round)"
	else
		smtp-source -s "$S" -m "$N" -f staff@city.example.jp -t rcpt@ext.example -F "$MSG" "127.0.0.1:$REINJECT_PORT" >&2 ||
			die "smtp-source failed (round $round)"
	fi
	t1=$(date +%s.%N)
	for _ in $(seq 6000); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.05; done
	kill -0 "$SINK_PID" 2>/dev/null && die "only some of $N messages reached smtp-sink ($mode, round $round)"
	wait "$SINK_PID" || true
	SINK_PID=
	if [ "$mode" = bccguard ]; then
		ok=$(grep -c -E '^To: r[0-9]+@ext[0-9]\.example$' "$dump" || true)
	else
		ok=$(grep -c '^To: rcpt@ext.example$' "$dump" || true)
	fi
	rm -f "$dump"
	awk -v n="$N" -v t0="$t0" -v t1="$t1" -v ok="$ok" 'BEGIN { printf "%.1f %d\n", n/(t1-t0), ok }' >"$PF/result"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }

echo "split.sh: $M messages x $R recipients = $N copies, $S sessions, $ROUNDS rounds; Postfix $(postconf -h mail_version)" >&2
declare -A rate
ratios=''
fail=0
for round in $(seq "$ROUNDS"); do
	order=(bccguard smtp-source)
	[ $((round % 2)) -eq 0 ] && order=(smtp-source bccguard)
	for mode in "${order[@]}"; do
		run "$mode" "$round"
		read -r r ok <"$PF/result"
		echo "  round $round, $mode: $r copies/s into the reinjection service, $ok of $N delivered as expected" >&2
		rate[$mode]+="$r "
		if [ "$mode" = bccguard ]; then last_b=$r; else last_s=$r; fi
		if [ "$ok" -ne "$N" ]; then
			echo "FAILED: $mode: $ok of $N delivered messages showed exactly their recipient" >&2
			fail=1
		fi
	done
	# The ratio of the two runs of one round: adjacent in time, so less
	# moved by other load on the machine than the ratio of the medians.
	ratios+="$(awk -v a="$last_b" -v b="$last_s" 'BEGIN { if (b > 0) printf "%.3f", a/b }') "
done
hwm=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$BCC_PID/status")
if grep -q -E 'level=(WARN|ERROR)' "$WORK/bccguard-split.log"; then
	grep -E 'level=(WARN|ERROR)' "$WORK/bccguard-split.log" | head -3 >&2
	echo "FAILED: warnings in bccguard's log (a fallback to hide?)" >&2
	fail=1
fi
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
b=$(med "${rate[bccguard]}")
s=$(med "${rate[smtp-source]}")
ratio=$(med "$ratios" | awk '{ printf "%.2f", $1 }')
echo "| split: $M messages × $R outside To recipients, $S sessions (median of $ROUNDS) | copies/s into the reinjection service | ratio (median of the rounds' ratios) |"
echo "|---|---:|---:|"
echo "| bccguard, delivery: split (copies handed back) | $b | $ratio |"
echo "| smtp-source, $N single-recipient messages of the same size | $s | 1.00 |"
echo ""
echo "bccguard's peak RSS (VmHWM) over the run: $hwm MiB"
{
	echo "split_bccguard $b"
	echo "split_smtp_source $s"
	echo "split_ratio $ratio"
	echo "split_hwm_mib $hwm"
	echo "split_failed $fail"
} >>"$RESULTS"
exit $fail
