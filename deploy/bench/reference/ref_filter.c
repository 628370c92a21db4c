/*
 * ref_filter: the reference filter for bccguard's benchmark.
 *
 * It does bccguard's job the naive way, on Sendmail's libmilter: for mail
 * from the internal domain it collects the To field(s) in the header
 * callback, counts the addresses by commas, calls an address external when
 * the text after its '@' (up to '>', ',', ';', ')' or white space) is not
 * the internal domain, and at end-of-message replaces the first To field
 * with "undisclosed-recipients:;" when there are 2 or more addresses and
 * at least one is external. No address parser, no display names, no
 * groups, no comments, no encoded words: it is a yardstick, not a product.
 *
 * It negotiates what bccguard negotiates: no connect, HELO, RCPT, DATA,
 * unknown command, end-of-header or body events; no reply to MAIL or to
 * header fields; only the queue id macro at end-of-message.
 *
 *	ref_filter inet:10032@127.0.0.1 [internal-domain]
 *	ref_filter unix:/run/ref.sock [internal-domain]
 *
 * libmilter runs one thread per milter connection; all per-message state
 * lives in the connection's private data, so nothing is shared.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>

#define WANT_PROTOCOL (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NORCPT | \
	SMFIP_NODATA | SMFIP_NOUNKNOWN | SMFIP_NOEOH | SMFIP_NOBODY | \
	SMFIP_NR_MAIL | SMFIP_NR_HDR)
#define WANT_ACTIONS (SMFIF_CHGHDRS | SMFIF_SETSYMLIST)

static const char *internal = "city.example.jp";
static size_t internal_len;

struct priv {
	bool nr_mail, nr_hdr;	/* replies negotiated away */
	bool internal_sender;
	char *to;		/* To field values, joined with ',' */
	size_t len, cap;
};

static struct priv *
get_priv(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);

	if (p == NULL) {
		p = calloc(1, sizeof(*p));
		if (p == NULL || smfi_setpriv(ctx, p) != MI_SUCCESS) {
			free(p);
			return NULL;
		}
	}
	return p;
}

static void
reset(struct priv *p)
{
	p->internal_sender = false;
	p->len = 0;
}

static bool
append(struct priv *p, const char *s, size_t n)
{
	if (p->len + n + 1 > p->cap) {
		size_t cap = p->cap ? p->cap : 1024;
		char *to;

		while (p->len + n + 1 > cap)
			cap *= 2;
		to = realloc(p->to, cap);
		if (to == NULL)
			return false;
		p->to = to;
		p->cap = cap;
	}
	memcpy(p->to + p->len, s, n);
	p->len += n;
	p->to[p->len] = '\0';
	return true;
}

static bool
is_end(char c)
{
	return c == '\0' || c == '>' || c == ',' || c == ';' || c == ')' ||
	    c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Is the domain that starts at d (and ends at is_end) the internal one? */
static bool
internal_domain(const char *d)
{
	size_t n = 0;

	while (!is_end(d[n]))
		n++;
	return n == internal_len && strncasecmp(d, internal, n) == 0;
}

static sfsistat
ref_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct priv *p = get_priv(ctx);

	(void)f2;
	(void)f3;
	if (p == NULL || (f0 & SMFIF_CHGHDRS) == 0)
		return SMFIS_REJECT;
	*pf0 = WANT_ACTIONS & f0;
	*pf1 = WANT_PROTOCOL & f1;
	*pf2 = 0;
	*pf3 = 0;
	p->nr_mail = (*pf1 & SMFIP_NR_MAIL) != 0;
	p->nr_hdr = (*pf1 & SMFIP_NR_HDR) != 0;
	/* Only the queue id, at end-of-message, as bccguard asks. */
	if ((*pf0 & SMFIF_SETSYMLIST) != 0)
		(void)smfi_setsymlist(ctx, SMFIM_EOM, "i");
	return SMFIS_CONTINUE;
}

static sfsistat
ref_envfrom(SMFICTX *ctx, char **argv)
{
	struct priv *p = get_priv(ctx);
	const char *at;

	if (p == NULL)
		return SMFIS_TEMPFAIL;
	reset(p);
	at = argv[0] != NULL ? strrchr(argv[0], '@') : NULL;
	p->internal_sender = at != NULL && internal_domain(at + 1);
	return p->nr_mail ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
ref_header(SMFICTX *ctx, char *name, char *value)
{
	struct priv *p = smfi_getpriv(ctx);

	if (p == NULL)
		return SMFIS_TEMPFAIL;
	if (p->internal_sender && strcasecmp(name, "To") == 0) {
		if ((p->len > 0 && !append(p, ",", 1)) ||
		    !append(p, value, strlen(value)))
			return SMFIS_TEMPFAIL;
	}
	return p->nr_hdr ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
ref_eom(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);
	int total = 0, external = 0;
	const char *s, *comma, *at;

	if (p == NULL)
		return SMFIS_TEMPFAIL;
	if (p->internal_sender && p->len > 0) {
		for (s = p->to; s != NULL; s = comma != NULL ? comma + 1 : NULL) {
			comma = strchr(s, ',');
			at = memchr(s, '@', comma != NULL ? (size_t)(comma - s) : strlen(s));
			if (at == NULL)
				continue;
			total++;
			if (!internal_domain(at + 1))
				external++;
		}
		if (total >= 2 && external >= 1 &&
		    smfi_chgheader(ctx, "To", 1, "undisclosed-recipients:;") != MI_SUCCESS)
			return SMFIS_TEMPFAIL;
	}
	reset(p);
	return SMFIS_ACCEPT;
}

static sfsistat
ref_abort(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);

	if (p != NULL)
		reset(p);
	return SMFIS_CONTINUE;
}

static sfsistat
ref_close(SMFICTX *ctx)
{
	struct priv *p = smfi_getpriv(ctx);

	if (p != NULL) {
		free(p->to);
		free(p);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
	.xxfi_name = "ref_filter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_CHGHDRS,
	.xxfi_envfrom = ref_envfrom,
	.xxfi_header = ref_header,
	.xxfi_eom = ref_eom,
	.xxfi_abort = ref_abort,
	.xxfi_close = ref_close,
	.xxfi_negotiate = ref_negotiate,
};

int
main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s inet:PORT@HOST|unix:/path [internal-domain]\n", argv[0]);
		return 2;
	}
	if (argc == 3)
		internal = argv[2];
	internal_len = strlen(internal);
	/* Postfix connects to a unix socket as its mail_owner. */
	umask(0111);
	if (smfi_setconn(argv[1]) != MI_SUCCESS ||
	    smfi_setbacklog(1024) != MI_SUCCESS ||
	    smfi_register(desc) != MI_SUCCESS ||
	    smfi_opensocket(true) != MI_SUCCESS) {
		fprintf(stderr, "%s: cannot set up the milter on %s\n", argv[0], argv[1]);
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
