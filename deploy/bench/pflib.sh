# shellcheck shell=bash
# Shared by postfix.sh and split.sh: a private Postfix instance for the
# benchmark. Source it after setting PF (the instance's directory, inside
# a WORK that Postfix's mail_owner can traverse) and defining die().
# It sets CONF, QUEUE and DATA.

# A free port on 127.0.0.1 (bind to 0, read it back, release it).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		shuf -i 20000-60000 -n 1
}

# wait_port PORT: until something accepts connections there.
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on 127.0.0.1:$1"
}

CONF=$PF/etc
QUEUE=$PF/queue
DATA=$PF/data

# Postfix finds a non-default configuration directory only when the
# default main.cf lists it. e2e tests (internal/postfixtest) edit the same
# parameter; they take this lock for it, and so do we.
LOCK=/etc/postfix/.postfixtest.lock
alt_dirs() { # add|remove DIR
	(
		flock 9
		local cur new
		cur=$(postconf -h alternate_config_directories | sed 's/[, ][, ]*/\n/g' | grep -v '^$' || true)
		if [ "$1" = add ]; then
			new=$(printf '%s\n%s\n' "$cur" "$2" | grep -v '^$' | sort -u)
		else
			new=$(printf '%s\n' "$cur" | grep -v -x -F "$2" | grep -v '^$' || true)
		fi
		if [ -n "$new" ]; then
			postconf -e "alternate_config_directories = $(echo "$new" | paste -sd, - | sed 's/,/, /g')"
		else
			postconf -X alternate_config_directories
		fi
	) 9>"$LOCK"
}

# pf_create SMTP_PORT SINK_PORT MILTERS: the directories, main.cf (all mail
# relayed to smtp-sink on SINK_PORT, smtpd_milters = MILTERS) and a
# master.cf with only our smtpd on SMTP_PORT among the inet services.
pf_create() {
	mkdir -m 755 "$CONF" "$QUEUE"
	mkdir -m 700 "$DATA"
	chown "$(postconf -h mail_owner)" "$DATA"
	cp /etc/postfix/master.cf "$CONF/master.cf"
	cat >"$CONF/main.cf" <<EOF
# Private instance of the benchmark (deploy/bench); removed when it ends.
compatibility_level = 3.6
queue_directory = $QUEUE
data_directory = $DATA
maillog_file = $CONF/maillog
maillog_file_prefixes = $CONF
myhostname = mx.city.example.jp
mydomain = city.example.jp
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$2
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
alias_maps =
alias_database =
biff = no
milter_default_action = tempfail
milter_protocol = 6
smtpd_milters = $3
EOF
	postconf -c "$CONF" -F '*/*/chroot = n'
	local svc
	for svc in $(postconf -c "$CONF" -M | awk '$2 == "inet" {print $1}'); do
		postconf -c "$CONF" -MX "$svc/inet"
	done
	postconf -c "$CONF" -Me "127.0.0.1:$1/inet=127.0.0.1:$1 inet n - n - - smtpd"
	if [ -z "$(postconf -c "$CONF" -M postlog/unix-dgram)" ]; then
		postconf -c "$CONF" -Me "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd"
	fi
}

# pf_start: register the instance and start it.
pf_start() {
	alt_dirs add "$CONF"
	postfix -c "$CONF" check
	postfix -c "$CONF" start >/dev/null 2>&1 || {
		cat "$CONF/maillog" >&2 2>/dev/null
		die "postfix -c $CONF start failed"
	}
}

# pf_stop: stop the instance, wait for its processes, unregister it.
pf_stop() {
	if [ -f "$QUEUE/pid/master.pid" ]; then
		postfix -c "$CONF" abort >/dev/null 2>&1
		local pgid
		pgid=$(tr -d ' \n' <"$QUEUE/pid/master.pid")
		for _ in $(seq 100); do
			pgrep -g "$pgid" >/dev/null 2>&1 || break
			sleep 0.1
		done
	fi
	alt_dirs remove "$CONF"
}
