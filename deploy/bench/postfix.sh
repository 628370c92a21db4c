#!/usr/bin/env bash
# End-to-end part of the benchmark (docs/performance.md): smtp-source sends
# N messages through a private Postfix instance to smtp-sink, without a
# milter and with bccguard in smtpd_milters (over TCP and over a unix
# socket), in rotating order, several rounds; it prints a markdown table
# with messages/s and the ratios.
#
#   deploy/bench/postfix.sh BCCGUARD_BINARY BCCGUARD_CONFIG WORKDIR
#
# run.sh calls it; it can also run alone (as root, with Debian's postfix
# package installed). Environment, all optional:
#   BENCH_PF_MESSAGES  messages per run (2000)
#   BENCH_PF_SESSIONS  concurrent smtp-source sessions (8)
#   BENCH_PF_ROUNDS    rounds of with/without (BENCH_ROUNDS or 3)
#   BENCH_PF_TIMEOUT   seconds to wait for all messages to arrive (300)
#   BENCH_PF_MODES     which runs: "without tcp unix" (tcp, unix: with
#                      bccguard listening on that kind of socket), plus
#                      "floor" when BENCH_PF_FLOOR is set
#   BENCH_PF_FLOOR     the floor filter (deploy/bench/floor): also run with
#                      it on a unix socket, the cost of any milter at all
#   BENCH_PF_RESULTS   file to append "key value" result lines to
#
# Every message has a To field with 3 addresses, one internal and two
# external, from an internal sender: bccguard must change every one of them,
# and the script checks at the sink that it did (and that without bccguard
# nothing changed). It exits non-zero when a check fails.
set -euo pipefail
export PATH="/usr/sbin:/sbin:$PATH"

if [ $# -ne 3 ]; then
	echo "usage: $0 BCCGUARD_BINARY BCCGUARD_CONFIG WORKDIR" >&2
	exit 2
fi
BCCGUARD=$1
CONFIG=$2
WORK=$3
N=${BENCH_PF_MESSAGES:-2000}
SESSIONS=${BENCH_PF_SESSIONS:-8}
ROUNDS=${BENCH_PF_ROUNDS:-${BENCH_ROUNDS:-3}}
TIMEOUT=${BENCH_PF_TIMEOUT:-300}
RESULTS=${BENCH_PF_RESULTS:-/dev/null}
FLOOR=${BENCH_PF_FLOOR:-}
read -r -a MODES <<<"${BENCH_PF_MODES:-without tcp unix${FLOOR:+ floor}}"

die() { echo "postfix.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (postfix start)"
if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null || ! command -v postfix >/dev/null; then
	die "needs Debian's postfix package (smtp-source, smtp-sink)"
fi

PF=$(mktemp -d "$WORK/postfix.XXXXXX")
chmod 755 "$WORK" "$PF"
# shellcheck source=deploy/bench/pflib.sh
. "$(dirname "$0")/pflib.sh"
SMTP_PORT=$(free_port)
SINK_PORT=$(free_port)
MILTER_PORT=$(free_port)
# smtp-sink dumps what it receives (as nobody) to memory, not to disk.
DUMP=$(mktemp -d "${BENCH_SHM:-/dev/shm}/bccguard-bench.XXXXXX" 2>/dev/null || mktemp -d "$PF/dump.XXXXXX")
chown nobody "$DUMP"

SINK_PID='' MILTER_PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	set +e
	[ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
	for pid in "${MILTER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	pf_stop
	wait 2>/dev/null
	rm -rf "$PF" "$DUMP"
}
trap cleanup EXIT

# --- private Postfix instance -------------------------------------------
# Only our smtpd listens; smtpd_milters is set per run below.
pf_create "$SMTP_PORT" "$SINK_PORT" ""
pf_start

wait_port "$SMTP_PORT"

# --- bccguard -------------------------------------------------------------
serve_flags=()
if [ "$(id -u)" -eq 0 ] && "$BCCGUARD" serve --help 2>&1 | grep -q -- --allow-root; then
	serve_flags+=(--allow-root)
fi
# One daemon per kind of socket. The unix socket is in WORK, which Postfix
# (running as its mail_owner) can traverse; the config's socket_mode lets
# it connect.
SOCK=$PF/bccguard.sock
declare -A MILTER=([tcp]="inet:127.0.0.1:$MILTER_PORT" [unix]="unix:$SOCK" [floor]="unix:$PF/floor.sock")
for m in tcp unix; do
	"$BCCGUARD" serve "${serve_flags[@]}" --config "$CONFIG" --listen "${MILTER[$m]}" \
		>"$WORK/bccguard-postfix-$m.log" 2>&1 &
	MILTER_PIDS+=($!)
done
if [ -n "$FLOOR" ]; then
	"$FLOOR" -listen "${MILTER[floor]}" >"$WORK/floor-postfix.log" 2>&1 &
	MILTER_PIDS+=($!)
fi
wait_port "$MILTER_PORT"
for s in "$SOCK" ${FLOOR:+"$PF/floor.sock"}; do
	for _ in $(seq 100); do [ -S "$s" ] && break; sleep 0.1; done
	[ -S "$s" ] || die "no milter created $s"
done

# --- the message ------------------------------------------------------------
MSG=$PF/message.txt
{
	printf 'From: staff@city.example.jp\n'
	printf 'To: user0@city.example.jp, user1@ext1.example, user2@ext2.example\n'
	printf 'Subject: Meeting notes\n'
	printf 'Date: Tue, 04 Mar 2025 10:15:00 +0900\n'
	printf 'Message-ID: <bench@city.example.jp>\n'
	printf 'MIME-Version: 1.0\n'
	printf 'Content-Type: text/plain; charset=UTF-8\n'
	printf '\n'
	for i in $(seq 12); do
		printf 'The quick brown fox jumps over the lazy dog. Line %02d of the body text.\n' "$i"
	done
} >"$MSG"

# run MODE ROUND: one timed run; writes "accepted/s delivered/s changed" to
# $PF/result.
run() {
	local mode=$1 round=$2 milters='' dump="$DUMP/$1-$2.txt"
	[ "$mode" != without ] && milters=${MILTER[$mode]}
	postconf -c "$CONF" -e "smtpd_milters = $milters"
	postfix -c "$CONF" reload >/dev/null 2>&1
	sleep 1 # let the old smtpd processes go
	# A sink that exits after N messages, dumping them for the check below.
	smtp-sink -u nobody -M "$N" -D "$dump" "127.0.0.1:$SINK_PORT" 1024 >/dev/null 2>&1 &
	SINK_PID=$!
	wait_port "$SINK_PORT"
	local t0 t1 t2
	t0=$(date +%s.%N)
	smtp-source -s "$SESSIONS" -m "$N" -f staff@city.example.jp -t rcpt@ext.example -r 3 \
		-F "$MSG" "127.0.0.1:$SMTP_PORT" >&2 || die "smtp-source failed ($mode, round $round)"
	t1=$(date +%s.%N)
	local waited=0
	while kill -0 "$SINK_PID" 2>/dev/null; do
		sleep 0.05
		waited=$((waited + 1))
		if [ $waited -gt $((TIMEOUT * 20)) ]; then
			postqueue -c "$CONF" -p | tail -3 >&2
			die "only some of $N messages reached smtp-sink within ${TIMEOUT}s ($mode, round $round)"
		fi
	done
	t2=$(date +%s.%N)
	wait "$SINK_PID" || true
	SINK_PID=
	local changed
	changed=$(grep -c '^To: undisclosed-recipients:;' "$dump" || true)
	rm -f "$dump"
	awk -v n="$N" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c="$changed" \
		'BEGIN { printf "%.1f %.1f %d\n", n/(t1-t0), n/(t2-t0), c }' >"$PF/result"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }

label() { case $1 in without) echo "without bccguard" ;; tcp) echo "with bccguard (TCP)" ;; unix) echo "with bccguard (unix socket)" ;; floor) echo "with the floor filter (unix socket)" ;; esac; }

echo "postfix.sh: $N messages, $SESSIONS smtp-source sessions, $ROUNDS rounds; Postfix $(postconf -h mail_version)" >&2
declare -A acc del
fail=0
for round in $(seq "$ROUNDS"); do
	# Rotate the order from round to round.
	order=("${MODES[@]:$(((round - 1) % ${#MODES[@]}))}" "${MODES[@]:0:$(((round - 1) % ${#MODES[@]}))}")
	for mode in "${order[@]}"; do
		run "$mode" "$round"
		read -r a d c <"$PF/result"
		echo "  round $round, $(label "$mode"): accepted $a msg/s, delivered $d msg/s, To changed $c of $N" >&2
		acc[$mode]+="$a "
		del[$mode]+="$d "
		if [ "$mode" != without ] && [ "$c" -ne "$N" ]; then
			echo "FAILED: $(label "$mode"): only $c of $N delivered messages had their To hidden" >&2
			fail=1
		fi
		if [ "$mode" = without ] && [ "$c" -ne 0 ]; then
			echo "FAILED: without bccguard $c messages had their To hidden" >&2
			fail=1
		fi
	done
done
if grep -q -i -E 'warning: milter|fatal|panic' "$CONF/maillog"; then
	grep -i -E 'warning: milter|fatal|panic' "$CONF/maillog" | head -5 >&2
	echo "FAILED: milter or fatal warnings in the Postfix log" >&2
	fail=1
fi

med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
echo "| Postfix end to end ($N msgs, $SESSIONS smtp-source sessions, median of $ROUNDS) | accepted by smtpd (msg/s) | delivered to smtp-sink (msg/s) | delivered, ratio to without |"
echo "|---|---:|---:|---:|"
base=$(med "${del[without]:-}")
for mode in without tcp unix floor; do
	[ -n "${del[$mode]:-}" ] || continue
	a=$(med "${acc[$mode]}")
	d=$(med "${del[$mode]}")
	r=$(awk -v a="$d" -v b="${base:-0}" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "-" }')
	echo "| $(label "$mode") | $a | $d | $r |"
	{
		echo "pf_${mode}_accepted $a"
		echo "pf_${mode}_delivered $d"
		echo "pf_${mode}_ratio $r"
	} >>"$RESULTS"
done
echo "pf_failed $fail" >>"$RESULTS"
exit $fail
