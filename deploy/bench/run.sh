#!/usr/bin/env bash
# bccguard's benchmark (docs/performance.md). `make bench` runs it.
#
# It builds bccguard, the C reference filter (libmilter) and the floor
# filter (go-milter doing nothing but the To change), then drives each of
# them with cmd/milterbench in the same scenarios, on the same kind of
# socket, in rotating order, several rounds, and prints markdown tables of
# the medians; then bccguard's memory with 500 idle and 64 busy sessions,
# and Postfix end to end with and without bccguard (postfix.sh). Last, the
# targets of the performance issue, met or missed.
#
# Every scenario must have every message's To changed by every filter; a
# filter that changes fewer, or any error, fails the run (exit status 1)
# after the tables are printed.
#
# Needs root (apt-get, postfix start) on Debian; installs libmilter-dev,
# gcc and postfix when missing. Environment, all optional:
#   BENCH_ROUNDS=3           rounds per scenario (median taken)
#   BENCH_DURATION=2s        length of one measurement (milterbench -duration)
#   BENCH_MESSAGES=          messages per session instead of BENCH_DURATION
#   BENCH_TRANSPORTS="tcp unix"
#   BENCH_SCENARIOS="s1 s8 s64 to500 body8k pfio1"
#   BENCH_RSS=1              measure memory (0: skip)
#   BENCH_POSTFIX=1          run postfix.sh (0: skip); see it for BENCH_PF_*
#   BENCH_SPLIT=1            run split.sh, delivery: split against smtp-source
#                            into the reinjection service (0: skip); see it
#                            for BENCH_SPLIT_*
#   BENCH_CONFIG=deploy/bench/bccguard.yaml
#   BENCH_BCCGUARD_LOG=/dev/null  where bccguard's log goes (it logs every
#                            conversion: formatted and written, not stored)
#   BENCH_QUIET_MAX=20       wait before a measurement while more than this
#                            percentage of CPU is busy with other work...
#   BENCH_QUIET_WAIT=30      ...but at most this many seconds each time...
#   BENCH_QUIET_TOTAL=240    ...and this many seconds in the whole run
#   BENCH_REPORT=            also write the report (markdown) to this file
#   BENCH_KEEP=0             1: keep the work directory (binaries, raw JSON, logs)
#   BENCH_WORKDIR=/var/tmp   where the work directory is created
#   BENCH_BASE_PORT=17100    first TCP port tried for the filters
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-2s}
MESSAGES=${BENCH_MESSAGES:-}
read -r -a TRANSPORTS <<<"${BENCH_TRANSPORTS:-tcp unix}"
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-s1 s8 s64 to500 body8k pfio1}"
CONFIG=${BENCH_CONFIG:-$ROOT/deploy/bench/bccguard.yaml}
BLOG=${BENCH_BCCGUARD_LOG:-/dev/null}
QUIET_MAX=${BENCH_QUIET_MAX:-20}
QUIET_WAIT=${BENCH_QUIET_WAIT:-30}
QUIET_TOTAL=${BENCH_QUIET_TOTAL:-240}
FILTERS=(bccguard reference floor)
START=$(date +%s)

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts a private Postfix)"

# --- packages ---------------------------------------------------------------
need=()
dpkg -s libmilter-dev >/dev/null 2>&1 || need+=(libmilter-dev)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
if [ "${BENCH_POSTFIX:-1}" = 1 ] && ! command -v smtp-source >/dev/null 2>&1; then need+=(postfix); fi
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- build --------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_WORKDIR:-/var/tmp}/bccguard-bench.XXXXXX")
chmod 755 "$WORK"
RAW=$WORK/raw
mkdir "$RAW"
PIDS=()
cleanup() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log "building in $WORK"
go build -o "$WORK/bccguard" ./cmd/bccguard
go build -o "$WORK/milterbench" ./cmd/milterbench
go build -o "$WORK/floor" ./deploy/bench/floor
go build -o "$WORK/splitload" ./deploy/bench/splitload
make -s -C deploy/bench/reference OUT="$WORK/ref_filter" >/dev/null
"$WORK/bccguard" config check --config "$CONFIG" >/dev/null
MB=$WORK/milterbench
SERVE_FLAGS=()
if "$WORK/bccguard" serve --help 2>&1 | grep -q -- --allow-root; then SERVE_FLAGS+=(--allow-root); fi

# --- helpers --------------------------------------------------------------------
# free_port sets PORT to a TCP port that no socket uses, in any state, and
# that this run has not handed out before.
NEXT_PORT=${BENCH_BASE_PORT:-17100}
free_port() {
	while [ -n "$(ss -Htan "sport = :$NEXT_PORT" 2>/dev/null)" ]; do NEXT_PORT=$((NEXT_PORT + 1)); done
	PORT=$NEXT_PORT
	NEXT_PORT=$((NEXT_PORT + 1))
}

# jf FILE KEY: a number or string from milterbench's flat JSON.
jf() {
	local v
	v=$(grep -o '"'"$2"'":\("[^"]*"\|[^,}]*\)' "$1" | head -1) || true
	v=${v#*:}
	v=${v#\"}
	echo "${v%\"}"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }

# Percentage of CPU busy (all cores) over half a second.
cpu_busy() {
	local a b c d e f g h t1 i1 t2 i2
	read -r _ a b c d e f g h _ </proc/stat
	t1=$((a + b + c + d + e + f + g + h)) i1=$((d + e))
	sleep 0.5
	read -r _ a b c d e f g h _ </proc/stat
	t2=$((a + b + c + d + e + f + g + h)) i2=$((d + e))
	echo $((100 * ((t2 - t1) - (i2 - i1)) / (t2 - t1 > 0 ? t2 - t1 : 1)))
}
QUIET_SPENT=0 NOISY=0
# Our filters are idle between measurements, so what is busy is other work.
wait_quiet() {
	local busy waited=0
	while busy=$(cpu_busy) && [ "$busy" -gt "$QUIET_MAX" ]; do
		if [ "$waited" -ge "$QUIET_WAIT" ] || [ "$QUIET_SPENT" -ge "$QUIET_TOTAL" ]; then
			NOISY=$((NOISY + 1))
			log "warning: measuring while ${busy}% of the CPU is busy with other work"
			return
		fi
		[ "$waited" -eq 0 ] && log "machine ${busy}% busy with other work; waiting"
		sleep 2
		waited=$((waited + 2)) QUIET_SPENT=$((QUIET_SPENT + 2))
	done
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

declare -A ADDR PID NEGOTIATED NEG RATE MEM INVALID

# start_filters TRANSPORT: starts the three filters, fresh, and waits until
# each handles a message.
start_filters() {
	local t=$1 p
	if [ "$t" = tcp ]; then
		free_port
		p=$PORT
		"$WORK/bccguard" serve "${SERVE_FLAGS[@]}" --config "$CONFIG" --listen "inet:127.0.0.1:$p" >>"$BLOG" 2>&1 &
		PID[bccguard]=$! ADDR[bccguard]=inet:127.0.0.1:$p
		free_port
		p=$PORT
		"$WORK/ref_filter" "inet:$p@127.0.0.1" city.example.jp >>"$WORK/reference-$t.log" 2>&1 &
		PID[reference]=$! ADDR[reference]=inet:127.0.0.1:$p
		free_port
		p=$PORT
		"$WORK/floor" -listen "inet:127.0.0.1:$p" >>"$WORK/floor-$t.log" 2>&1 &
		PID[floor]=$! ADDR[floor]=inet:127.0.0.1:$p
	else
		rm -f "$WORK"/*.sock
		"$WORK/bccguard" serve "${SERVE_FLAGS[@]}" --config "$CONFIG" --listen "unix:$WORK/bccguard.sock" >>"$BLOG" 2>&1 &
		PID[bccguard]=$! ADDR[bccguard]=unix:$WORK/bccguard.sock
		"$WORK/ref_filter" "unix:$WORK/reference.sock" city.example.jp >>"$WORK/reference-$t.log" 2>&1 &
		PID[reference]=$! ADDR[reference]=unix:$WORK/reference.sock
		"$WORK/floor" -listen "unix:$WORK/floor.sock" >>"$WORK/floor-$t.log" 2>&1 &
		PID[floor]=$! ADDR[floor]=unix:$WORK/floor.sock
	fi
	PIDS+=("${PID[bccguard]}" "${PID[reference]}" "${PID[floor]}")
	local f
	for f in "${FILTERS[@]}"; do
		local ok=0
		for _ in $(seq 100); do
			if "$MB" -addr "${ADDR[$f]}" -sessions 1 -messages 1 -json >"$WORK/probe.json" 2>/dev/null; then ok=1; break; fi
			kill -0 "${PID[$f]}" 2>/dev/null || break
			sleep 0.1
		done
		[ "$ok" = 1 ] || die "$f on ${ADDR[$f]} does not answer (for bccguard's log: BENCH_BCCGUARD_LOG=FILE BENCH_KEEP=1)"
		# The answer must have come from our process, not from another
		# program that grabbed the port meanwhile.
		kill -0 "${PID[$f]}" 2>/dev/null || die "$f exited (for bccguard's log: BENCH_BCCGUARD_LOG=FILE)"
		if [ "$t" = tcp ] && ! ss -Hltnp "sport = :${ADDR[$f]##*:}" | grep -q "pid=${PID[$f]},"; then
			die "${ADDR[$f]} is not served by $f (pid ${PID[$f]})"
		fi
		NEGOTIATED[$f]=$(jf "$WORK/probe.json" negotiated)
	done
}
stop_filters() {
	local f
	for f in "${FILTERS[@]}"; do
		kill "${PID[$f]}" 2>/dev/null || true
		wait "${PID[$f]}" 2>/dev/null || true
	done
}

# Scenario name -> milterbench flags and a label.
declare -A SFLAGS SLABEL
SFLAGS[s1]="-sessions 1 -to 3 -body 1024" SLABEL[s1]="1 session"
SFLAGS[s8]="-sessions 8 -to 3 -body 1024" SLABEL[s8]="8 sessions"
SFLAGS[s64]="-sessions 64 -to 3 -body 1024" SLABEL[s64]="64 sessions"
SFLAGS[to500]="-sessions 8 -to 500 -body 1024" SLABEL[to500]="500 To addresses, 8 sessions"
SFLAGS[body8k]="-sessions 8 -to 3 -body 8192" SLABEL[body8k]="8 KiB body, 8 sessions"
SFLAGS[pfio1]="-sessions 1 -to 3 -body 1024 -postfix-io" SLABEL[pfio1]="1 session, Postfix's TCP writes"

FAILS=()
# measure TRANSPORT SCENARIO FILTER ROUND
measure() {
	local t=$1 s=$2 f=$3 r=$4 out="$RAW/$1-$2-$3-$4.json" c0 c1 amount
	if [ -n "$MESSAGES" ]; then amount=(-messages "$MESSAGES"); else amount=(-duration "$DURATION"); fi
	wait_quiet
	c0=$(cpu_ticks "${PID[$f]}")
	# shellcheck disable=SC2086
	"$MB" -addr "${ADDR[$f]}" ${SFLAGS[$s]} "${amount[@]}" -json >"$out" 2>"$out.err" || true
	c1=$(cpu_ticks "${PID[$f]}")
	if ! grep -q '"messages"' "$out"; then
		FAILS+=("$t $s $f round $r: milterbench failed: $(head -c 300 "$out.err")")
		INVALID[$t-$s-$f]=1
		echo '{}' >"$out"
		return
	fi
	local n changed errors rejected
	n=$(jf "$out" messages) changed=$(jf "$out" to_changed) errors=$(jf "$out" errors) rejected=$(jf "$out" rejected)
	# Fewer than 10 clock ticks (100 ms) of CPU time is too coarse to report.
	echo "cpu_us_per_msg $(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { if (n > 0 && d >= 10) printf "%.1f", d * 1e6 / hz / n; else print "nan" }')" >"$out.cpu"
	if [ "$n" -eq 0 ] || [ "$changed" -ne "$n" ] || [ "$errors" -ne 0 ] || [ "$rejected" -ne 0 ]; then
		FAILS+=("$t $s $f round $r: $n messages, To changed in $changed, $errors errors, $rejected rejected (every To must change): $(jf "$out" first_error)")
		INVALID[$t-$s-$f]=1
	fi
	log "$t $s $f round $r: $(jf "$out" msgs_per_s | cut -d. -f1) msg/s, p50 $(jf "$out" p50_ms) ms, changed $changed/$n"
}

# med TRANSPORT SCENARIO FILTER KEY: median over rounds.
med() {
	local r
	for r in $(seq "$ROUNDS"); do
		if [ "$4" = cpu ]; then
			awk '{ print $2 }' "$RAW/$1-$2-$3-$r.json.cpu" 2>/dev/null
		else
			jf "$RAW/$1-$2-$3-$r.json" "$4"
		fi
	done | grep -v '^$' | median
}
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "nan" || v == "") print "-"; else printf "%.*f", d, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "nan") printf "%.2f", a / b; else print "-" }'; }

REPORT=$WORK/report.md
out() { echo "$*" | tee -a "$REPORT"; }

# --- milter benchmark -----------------------------------------------------------
for t in "${TRANSPORTS[@]}"; do
	log "starting the filters ($t)"
	start_filters "$t"
	# Warm up: let each filter grow its buffers and start its threads.
	for f in "${FILTERS[@]}"; do "$MB" -addr "${ADDR[$f]}" -sessions 8 -duration 1s -json >/dev/null 2>&1 || true; done
	for s in "${SCENARIOS[@]}"; do
		if [ "$s" = pfio1 ] && [ "$t" != tcp ]; then continue; fi
		for r in $(seq "$ROUNDS"); do
			# Rotate which filter goes first.
			k=$(((r - 1) % 3))
			for f in "${FILTERS[@]:k}" "${FILTERS[@]:0:k}"; do measure "$t" "$s" "$f" "$r"; done
		done
	done
	for f in "${FILTERS[@]}"; do NEG[$t-$f]=${NEGOTIATED[$f]}; done
	stop_filters
done

# --- memory -----------------------------------------------------------------------
vm() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# rss FILTER: fresh filter on TCP; 500 idle sessions, then 64 busy ones.
rss() {
	local f=$1
	start_filters tcp >/dev/null
	local pid=${PID[$f]} idle_out=$WORK/idle-$f.txt
	MEM[$f-base]=$(vm "$pid" VmRSS)
	"$MB" -addr "${ADDR[$f]}" -idle -sessions 500 -duration 300s >"$idle_out" 2>&1 &
	local ipid=$!
	for _ in $(seq 600); do grep -q '^ready:' "$idle_out" && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
	grep -q '^ready:' "$idle_out" || { FAILS+=("rss $f: 500 idle sessions did not open: $(tail -c 300 "$idle_out")"); kill "$ipid" 2>/dev/null; stop_filters; return; }
	sleep 2
	MEM[$f-idle]=$(vm "$pid" VmRSS)
	MEM[$f-idlehwm]=$(vm "$pid" VmHWM)
	kill -TERM "$ipid"
	wait "$ipid" || FAILS+=("rss $f: the 500 idle sessions did not all survive: $(tail -c 300 "$idle_out")")
	"$MB" -addr "${ADDR[$f]}" -sessions 64 -duration 5s -json >"$WORK/load-$f.json" 2>&1 &
	local lpid=$! max=0 v
	while kill -0 "$lpid" 2>/dev/null; do
		v=$(vm "$pid" VmRSS)
		max=$(awk -v a="$max" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
		sleep 0.1
	done
	wait "$lpid" || FAILS+=("rss $f: errors under load: $(jf "$WORK/load-$f.json" first_error)")
	MEM[$f-load]=$max
	MEM[$f-hwm]=$(vm "$pid" VmHWM)
	stop_filters
}
if [ "${BENCH_RSS:-1}" = 1 ]; then
	for f in "${FILTERS[@]}"; do
		log "memory: $f"
		rss "$f"
	done
fi

# --- Postfix end to end ------------------------------------------------------------
PF_RES=$WORK/postfix.res
: >"$PF_RES"
PF_TABLE=
if [ "${BENCH_POSTFIX:-1}" = 1 ]; then
	log "Postfix end to end"
	wait_quiet
	if ! PF_TABLE=$(BENCH_PF_RESULTS=$PF_RES BENCH_ROUNDS=$ROUNDS BENCH_PF_FLOOR=$WORK/floor \
		"$ROOT/deploy/bench/postfix.sh" "$WORK/bccguard" "$CONFIG" "$WORK"); then
		FAILS+=("postfix.sh failed (see above)")
	fi
fi
pf() { awk -v k="$1" '$1 == k { print $2 }' "$PF_RES"; }

# --- split delivery --------------------------------------------------------------------
SPLIT_TABLE=
if [ "${BENCH_SPLIT:-1}" = 1 ]; then
	log "split delivery"
	wait_quiet
	if ! SPLIT_TABLE=$(BENCH_SPLIT_RESULTS=$PF_RES BENCH_ROUNDS=$ROUNDS \
		"$ROOT/deploy/bench/split.sh" "$WORK/bccguard" "$WORK/splitload" "$WORK"); then
		FAILS+=("split.sh failed (see above)")
	fi
fi

# --- report ---------------------------------------------------------------------------
: >"$REPORT"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit + uncommitted changes"
out "## Results"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); bccguard at $commit"
out "- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
out "- $(go version | cut -d' ' -f3), go-milter $(go list -m -f '{{.Version}}' github.com/d--j/go-milter), libmilter $(dpkg-query -W -f '${Version}' libmilter-dev 2>/dev/null), Postfix $(postconf -h mail_version 2>/dev/null || echo -)"
out "- command: \`BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION${MESSAGES:+ BENCH_MESSAGES=$MESSAGES} deploy/bench/run.sh\`; each number is the median of $ROUNDS rounds of ${MESSAGES:+$MESSAGES messages per session}${MESSAGES:-$DURATION}"
[ "$NOISY" -gt 0 ] && out "- **warning**: $NOISY measurements were taken while other work kept more than $QUIET_MAX% of the CPU busy"
out ""
for t in "${TRANSPORTS[@]}"; do
	tl=$([ "$t" = tcp ] && echo "TCP loopback" || echo "unix socket")
	out "### Milter protocol, $tl"
	out ""
	out "messages/s (p50 / p99 latency of a transaction in ms); ratios of messages/s"
	out ""
	out "| scenario | bccguard | C reference | floor | bccguard / reference | floor / reference | bccguard / floor |"
	out "|---|---:|---:|---:|---:|---:|---:|"
	for s in "${SCENARIOS[@]}"; do
		if [ "$s" = pfio1 ] && [ "$t" != tcp ]; then continue; fi
		row="| ${SLABEL[$s]} |"
		for f in "${FILTERS[@]}"; do
			m=$(med "$t" "$s" "$f" msgs_per_s)
			RATE[$t-$s-$f]=$m
			row+=" $(fmt "$m") ($(fmt "$(med "$t" "$s" "$f" p50_ms)" 2) / $(fmt "$(med "$t" "$s" "$f" p99_ms)" 2))${INVALID[$t-$s-$f]:+ **INVALID**} |"
		done
		row+=" $(ratio "${RATE[$t-$s-bccguard]}" "${RATE[$t-$s-reference]}") | $(ratio "${RATE[$t-$s-floor]}" "${RATE[$t-$s-reference]}") | $(ratio "${RATE[$t-$s-bccguard]}" "${RATE[$t-$s-floor]}") |"
		out "$row"
	done
	out ""
	out "CPU time of the filter process per message, µs (all its threads; less sensitive to other load than messages/s; - : under 100 ms in total, too coarse)"
	out ""
	out "| scenario | bccguard | C reference | floor |"
	out "|---|---:|---:|---:|"
	for s in "${SCENARIOS[@]}"; do
		if [ "$s" = pfio1 ] && [ "$t" != tcp ]; then continue; fi
		out "| ${SLABEL[$s]} | $(fmt "$(med "$t" "$s" bccguard cpu)" 1) | $(fmt "$(med "$t" "$s" reference cpu)" 1) | $(fmt "$(med "$t" "$s" floor cpu)" 1) |"
	done
	out ""
	out "Negotiated ($tl): bccguard: ${NEG[$t-bccguard]:-?}; reference: ${NEG[$t-reference]:-?}; floor: ${NEG[$t-floor]:-?}"
	out ""
done
if [ "${BENCH_RSS:-1}" = 1 ]; then
	out "### Memory (VmRSS / VmHWM from /proc, MiB; fresh process, TCP)"
	out ""
	out "| filter | started | 500 idle sessions (RSS / HWM) | 64 sessions under load, 5 s (max RSS / HWM) |"
	out "|---|---:|---:|---:|"
	for f in "${FILTERS[@]}"; do
		out "| $f | ${MEM[$f-base]:--} | ${MEM[$f-idle]:--} / ${MEM[$f-idlehwm]:--} | ${MEM[$f-load]:--} / ${MEM[$f-hwm]:--} |"
	done
	out ""
fi
if [ -n "$PF_TABLE" ]; then
	out "### Postfix end to end (smtp-source → Postfix → smtp-sink)"
	out ""
	out "$PF_TABLE"
	out ""
fi

if [ -n "$SPLIT_TABLE" ]; then
	out "### Split delivery (splitload → Postfix with bccguard → reinjection service, against smtp-source → reinjection service)"
	out ""
	out "$SPLIT_TABLE"
	out ""
fi

# --- targets ----------------------------------------------------------------------------
out "### Targets"
out ""
out "| target | measured | |"
out "|---|---:|---|"
verdict() { awk -v v="$1" -v op="$2" -v x="$3" 'BEGIN { if (v == "invalid") print "**not valid: a check failed**"; else if (v == "-" || v == "" || v == "nan") print "not measured"; else if ((op == ">=" && v + 0 >= x + 0) || (op == "<=" && v + 0 <= x + 0)) print "met"; else print "**MISSED**" }'; }
target() { # label value op threshold [note]
	out "| $1 | $2 | $(verdict "$2" "$3" "$4")${5:+ $5} |"
}
# The reference waiting on delayed ACKs (p50 of 40 ms or more) makes a
# ratio meaningless as a comparison of the filters' own costs.
stalled() {
	awk -v p="$(med "$1" "$2" reference p50_ms)" 'BEGIN { if (p != "nan" && p >= 40) print "(the reference waits ~44 ms per message for a delayed ACK here, see docs/performance.md)" }'
}
for t in "${TRANSPORTS[@]}"; do
	tl=$([ "$t" = tcp ] && echo "TCP" || echo "unix")
	for s in s8 s64 s1 to500; do
		case $s in s1) x=1.2 ;; to500) x=1.0 ;; *) x=2.0 ;; esac
		[ -n "${RATE[$t-$s-reference]:-}" ] || continue
		v=$(ratio "${RATE[$t-$s-bccguard]:-}" "${RATE[$t-$s-reference]:-}")
		[ -n "${INVALID[$t-$s-bccguard]:-}${INVALID[$t-$s-reference]:-}" ] && v="invalid"
		target "${SLABEL[$s]}, $tl: bccguard ≥ $x × reference" "$v" ">=" "$x" "$(stalled "$t" "$s")"
	done
done
if [ -s "$PF_RES" ]; then
	for m in tcp unix; do
		[ -n "$(pf "pf_${m}_ratio")" ] && target "Postfix with bccguard ($m socket) ≥ 0.95 × without" "$(pf "pf_${m}_ratio")" ">=" 0.95
	done
fi
if [ -n "$(pf split_ratio)" ]; then
	target "split: bccguard's copies/s ≥ 0.8 × smtp-source's into the reinjection service" "$(pf split_ratio)" ">=" 0.8
fi
if [ "${BENCH_RSS:-1}" = 1 ]; then
	target "bccguard RSS with 500 idle sessions ≤ 64 MiB" "${MEM[bccguard-idle]:--}" "<=" 64
	target "bccguard RSS, 64 sessions under load ≤ 64 MiB (max RSS)" "${MEM[bccguard-load]:--}" "<=" 64
fi
out ""
out "Run time: $(($(date +%s) - START)) s."

if [ -n "${BENCH_REPORT:-}" ]; then cp "$REPORT" "$BENCH_REPORT"; fi
if [ ${#FAILS[@]} -gt 0 ]; then
	echo >&2
	for f in "${FAILS[@]}"; do echo "FAILED: $f" >&2; done
	die "${#FAILS[@]} check(s) failed: the numbers above do not count"
fi
