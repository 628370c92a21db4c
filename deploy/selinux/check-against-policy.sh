#!/usr/bin/env bash
# Checks bccguard_postfix.te and the SELinux statements of docs/install.md
# against a policy built from fedora-selinux/selinux-policy sources (what
# RHEL's policy is built from), on a machine without SELinux:
#   - builds the targeted base and the modules that postfix, milter and
#     unconfined need to link (found by following unmet requirements);
#   - links them without and with bccguard_postfix, expands both with the
#     neverallow checks on (semodule_expand), and asks sesearch/seinfo:
#     TCP works without the module, the unix socket needs exactly it.
# Not part of .ci/run (it needs the policy sources, i.e. the network):
#   git clone https://github.com/fedora-selinux/selinux-policy /tmp/sp
#   deploy/selinux/check-against-policy.sh /tmp/sp
# Needs Debian packages checkpolicy, semodule-utils, setools, m4, python3.
# Works in a scratch copy of the sources; the last line is PASS or FAIL.
set -euo pipefail
src=${1:?usage: $0 SELINUX_POLICY_SOURCE_DIR}
te=$(cd "$(dirname "$0")" && pwd)/bccguard_postfix.te
fail() {
	echo "FAIL $*" >&2
	exit 1
}
for tool in checkmodule semodule_package semodule_link semodule_expand sesearch seinfo m4 python3; do
	command -v "$tool" >/dev/null || fail "$tool not found"
done

work=$(mktemp -d /tmp/bccguard-selinux.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$src/." "$work/sp"
cd "$work/sp"
echo "policy sources: $(git log -1 --format='%h %cs' 2>/dev/null || echo unknown)"
M=(NAME=targeted TYPE=mcs DISTRO=redhat UBAC=n DIRECT_INITRC=n MONOLITHIC=n
	MLS_CATS=1024 MCS_CATS=1024 UNK_PERMS=allow)
make "${M[@]}" bare >/dev/null 2>&1 || true
make "${M[@]}" conf >/dev/null 2>&1 || fail "make conf"
cp dist/targeted/modules.conf policy/modules.conf

# Fedora builds with interfaces of policies kept elsewhere (container-selinux);
# stand-ins that require a type nobody declares switch off the optional
# blocks that call them, as a missing module would. build TARGET adds one for
# each unknown interface the compiler stops at.
stubs=policy/modules/contrib/zz_bccguard_stubs.if
: >"$stubs"
build() {
	local name
	for _ in $(seq 60); do
		if make "${M[@]}" "$1" >"$work/build.log" 2>&1; then return 0; fi
		name=$(grep -o "syntax error' at token '[a-z0-9_]*'" "$work/build.log" | head -n1 | sed "s/.*token '//; s/'//")
		[ -n "$name" ] || { grep -v '^m4 ' "$work/build.log" | tail -n5 >&2; fail "make $1"; }
		printf "interface(\`%s',\`\n\tgen_require(\`\n\t\ttype bccguard_stub_missing_t;\n\t')\n\tallow \$1 bccguard_stub_missing_t:file read;\n')\n" "$name" >>"$stubs"
	done
	fail "make $1: too many unknown interfaces"
}
build base
[ -f base.pp ] || fail "base.pp not built"

mods=(postfix milter mta unconfined)
for m in "${mods[@]}"; do build "$m.pp"; done
for _ in $(seq 60); do
	out=$(semodule_link -o "$work/without.lnk" base.pp "${mods[@]/%/.pp}" 2>&1) && break
	need=$(grep -o 'requirements were not met: [a-z_/]* [a-z0-9_]*' <<<"$out" | head -n1 | awk '{print $NF}')
	[ -n "$need" ] || { echo "$out" >&2; fail "link"; }
	file=$(grep -lE "^\s*(type|attribute|attribute_role|role) $need\b" policy/modules/*/*.te | head -n1)
	[ -n "$file" ] || fail "no module declares $need"
	m=$(basename "$file" .te)
	build "$m.pp"
	mods+=("$m")
done
[ -f "$work/without.lnk" ] || fail "could not link base and modules"
echo "linked base + ${#mods[@]} modules: ${mods[*]}"

checkmodule -M -m -o "$work/bccguard_postfix.mod" "$te" >/dev/null
semodule_package -o "$work/bccguard_postfix.pp" -m "$work/bccguard_postfix.mod"
semodule_link -o "$work/with.lnk" base.pp "${mods[@]/%/.pp}" "$work/bccguard_postfix.pp" >/dev/null 2>&1 ||
	fail "bccguard_postfix does not link (a type or class it requires is missing)"
# Without -a: the neverallow rules are checked.
semodule_expand "$work/without.lnk" "$work/without.pol" || fail "expand without the module"
semodule_expand "$work/with.lnk" "$work/with.pol" || fail "bccguard_postfix violates a neverallow rule"
echo "ok   bccguard_postfix links and expands, neverallow rules checked"

# (Output captured first: grep -q would end a pipe early, and pipefail would
# count sesearch's SIGPIPE as a failure.)
has() {
	local out
	out=$(sesearch "$@" 2>/dev/null) || true
	grep -q '^allow\|^type_transition' <<<"$out"
}
for d in postfix_smtpd_t postfix_cleanup_t; do
	has -A -s "$d" -t unreserved_port_t -c tcp_socket -p name_connect "$work/without.pol" || fail "$d may not connect to TCP unreserved_port_t"
	has -A -s "$d" -t postfix_spool_t -c dir -p search "$work/without.pol" || fail "$d may not search postfix_spool_t"
	! has -A -s "$d" -t unconfined_service_t -c unix_stream_socket -p connectto "$work/without.pol" || fail "$d may connect to unconfined_service_t already: module not needed?"
	! has -A -s "$d" -t postfix_spool_t -c sock_file -p write "$work/without.pol" || fail "$d may write postfix_spool_t sockets already"
	has -A -s "$d" -t unconfined_service_t -c unix_stream_socket -p connectto "$work/with.pol" || fail "module does not give $d connectto"
	has -A -s "$d" -t postfix_spool_t -c sock_file -p write "$work/with.pol" || fail "module does not give $d sock_file write"
done
echo "ok   smtpd and cleanup: TCP to any port and the spool directory without the module; the unix socket only with it"
has -T -s init_t -t bin_t -c process "$work/without.pol" || fail "no init_t bin_t -> transition"
grep -q unconfined_service_t <<<"$(sesearch -T -s init_t -t bin_t -c process "$work/without.pol")" || fail "init_t runs bin_t elsewhere than unconfined_service_t"
has -A -s init_t -t unconfined_service_t -c process2 -p nnp_transition "$work/without.pol" || fail "no nnp_transition (NoNewPrivileges=yes)"
has -A -s unconfined_service_t -t unreserved_port_t -c tcp_socket -p name_bind "$work/without.pol" || fail "unconfined_service_t may not bind unreserved ports"
has -A -s unconfined_service_t -t postfix_spool_t -c sock_file -p create "$work/without.pol" || fail "unconfined_service_t may not create the socket"
! has -T -s unconfined_service_t -t postfix_spool_t "$work/without.pol" || fail "a type transition relabels what bccguard creates in the spool"
portcon=$(seinfo --portcon 10030 "$work/without.pol")
grep -q 'tcp 1024-32767 .*unreserved_port_t' <<<"$portcon" || fail "10030 is not unreserved_port_t"
! grep -q 'tcp 10030 ' <<<"$portcon" || fail "10030 has a label of its own"
echo "ok   systemd runs bin_t as unconfined_service_t (NoNewPrivileges allowed), which may bind 10030 and create the socket"
echo "PASS"
