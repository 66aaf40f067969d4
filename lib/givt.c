/*
 * User agents: an Aho-Corasick automaton compiled into a dense DFA over a
 * reduced alphabet (one class per byte that occurs in some pattern, upper
 * case folded onto lower case, class 0 for every other byte), so a match is
 * one table step per UA byte. IP ranges: every address is a 128-bit number
 * (IPv4 as ::ffff:a.b.c.d); the prefixes, being nested or disjoint, are
 * flattened once into sorted breakpoints, each starting an interval whose
 * longest covering prefix is known, so a lookup is one binary search.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "givt.h"

__extension__ typedef unsigned __int128 u128;

#define NIL       UINT32_MAX
#define U128_MAX  (~(u128)0)
#define V4_MAPPED ((u128)0xffff << 32)

typedef struct pfx {
        u128 start, end; /* inclusive */
        uint8_t len;     /* 0-128, IPv4 as 96 + its length */
        uint8_t v4;      /* written as IPv4: printed back that way */
} pfx_t;

/* From start up to the next breakpoint, the longest listed prefix holding
 * an address is pfx[label] (-1: none). */
typedef struct bp {
        u128 start;
        int32_t label;
} bp_t;

struct sg_givt {
        int tag_missing_ua;
        /* user agents */
        char **ua;
        int ua_cnt, ua_alloc;
        size_t ua_bytes;
        uint8_t cls[256];
        uint32_t ncls, nstates;
        uint32_t *delta; /* nstates * ncls */
        int32_t *out;    /* per state: a pattern ending here, or -1 */
        /* IP ranges */
        pfx_t *pfx;
        size_t pfx_cnt, pfx_alloc;
        bp_t *bp;
        size_t bp_cnt;
};

/* Declared bots and crawlers, HTTP libraries, headless browsers: keep in
 * step with config/bot_ua.txt (a unit test compares them). Generic words
 * such as "bot" are left out on purpose: they hit real phones ("Cubot"). */
const char *const sg_givt_builtin_ua[] = {
    /* declared bots, crawlers, link previews, monitors */
    "googlebot", "adsbot-google", "mediapartners-google",
    "google-inspectiontool", "bingbot", "bingpreview", "adidxbot", "slurp",
    "duckduckbot", "baiduspider", "yandexbot", "yandex.com/bots", "seznambot",
    "exabot", "ahrefsbot", "semrushbot", "mj12bot", "dotbot", "petalbot",
    "applebot", "bytespider", "gptbot", "ccbot", "claudebot", "amazonbot",
    "facebookexternalhit", "facebookcatalog", "meta-externalagent",
    "twitterbot", "linkedinbot", "pinterestbot", "slackbot", "discordbot",
    "telegrambot", "ia_archiver", "archive.org_bot", "uptimerobot", "pingdom",
    "chrome-lighthouse", "crawler", "spider",
    /* HTTP libraries and tools */
    "curl/", "wget/", "python-requests", "python-urllib", "python-httpx",
    "aiohttp", "go-http-client", "java/", "okhttp", "libwww-perl",
    "apache-httpclient", "axios/", "node-fetch", "scrapy",
    /* headless and automated browsers */
    "headlesschrome", "phantomjs", "puppeteer", "selenium", "playwright", NULL};

/* ------------------------------------------------------------ list files */

typedef int (*line_fn)(sg_givt_t *g, char *text, const char *path,
                       unsigned lineno, const char *line, char *errstr,
                       size_t errstr_size);

static int is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r';
}

/*
 * Feeds fn every line that is not blank or a '#' comment, trimmed at both
 * ends. The checks common to both formats live here so both report them
 * the same way.
 */
static int load_lines(sg_givt_t *g, const char *path, line_fn fn, char *errstr,
                      size_t errstr_size)
{
        FILE *f = fopen(path, "r");
        char *line = NULL, *s, *e;
        size_t alloc = 0;
        ssize_t n;
        unsigned lineno = 0;
        int rc = 0;

        if (!f) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        while ((n = getline(&line, &alloc, f)) != -1) {
                lineno++;
                if (n > 0 && line[n - 1] == '\n')
                        line[--n] = '\0';
                if (memchr(line, '\0', (size_t)n)) {
                        snprintf(errstr, errstr_size, "%s:%u: NUL byte", path,
                                 lineno);
                        rc = -1;
                        break;
                }
                if (n > SG_GIVT_LINE_MAX) {
                        snprintf(errstr, errstr_size,
                                 "%s:%u: line longer than %d bytes", path,
                                 lineno, SG_GIVT_LINE_MAX);
                        rc = -1;
                        break;
                }
                for (s = line; is_blank(*s); s++)
                        ;
                for (e = s + strlen(s); e > s && is_blank(e[-1]); e--)
                        ;
                *e = '\0';
                if (*s == '\0' || *s == '#')
                        continue;
                if (fn(g, s, path, lineno, line, errstr, errstr_size) == -1) {
                        rc = -1;
                        break;
                }
        }
        if (rc == 0 && ferror(f)) {
                snprintf(errstr, errstr_size, "%s: read error: %s", path,
                         strerror(errno));
                rc = -1;
        }
        free(line);
        fclose(f);
        return rc;
}

/* ----------------------------------------------------------- user agents */

static int ua_add(sg_givt_t *g, const char *pat, char *errstr,
                  size_t errstr_size)
{
        size_t len = strlen(pat);
        char *copy;

        if (g->ua_cnt == g->ua_alloc) {
                int na = g->ua_alloc ? 2 * g->ua_alloc : 64;
                char **nu = realloc(g->ua, (size_t)na * sizeof(*nu));
                if (!nu)
                        goto oom;
                g->ua = nu;
                g->ua_alloc = na;
        }
        copy = malloc(len + 1);
        if (!copy)
                goto oom;
        /* Folded once here, so matching only folds the UA. */
        for (size_t i = 0; i <= len; i++)
                copy[i] =
                    (pat[i] >= 'A' && pat[i] <= 'Z') ? pat[i] + 32 : pat[i];
        g->ua[g->ua_cnt++] = copy;
        g->ua_bytes += len;
        return 0;
oom:
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

static int ua_line(sg_givt_t *g, char *text, const char *path, unsigned lineno,
                   const char *line, char *errstr, size_t errstr_size)
{
        for (const char *p = text; *p; p++) {
                unsigned char c = (unsigned char)*p;
                if (c < 0x20 || c > 0x7e) {
                        /* User agents are ASCII (RFC 9110): such a byte is
                         * a broken file, not a pattern. */
                        snprintf(errstr, errstr_size,
                                 "%s:%u: byte 0x%02x at column %u is not "
                                 "printable ASCII",
                                 path, lineno, c, (unsigned)(p - line) + 1);
                        return -1;
                }
        }
        if (g->ua_cnt == SG_GIVT_UA_MAX) {
                snprintf(errstr, errstr_size, "%s:%u: more than %d patterns",
                         path, lineno, SG_GIVT_UA_MAX);
                return -1;
        }
        if (g->ua_bytes + strlen(text) > SG_GIVT_UA_BYTES_MAX) {
                snprintf(errstr, errstr_size,
                         "%s:%u: patterns longer than %d bytes in total", path,
                         lineno, SG_GIVT_UA_BYTES_MAX);
                return -1;
        }
        return ua_add(g, text, errstr, errstr_size);
}

/* Compiles the patterns into the DFA (see the top of the file). */
static int ua_build(sg_givt_t *g, char *errstr, size_t errstr_size)
{
        size_t maxstates = g->ua_bytes + 1, qh = 0, qt = 0;
        uint32_t *fail = NULL, *queue = NULL, nc;

        memset(g->cls, 0, sizeof(g->cls));
        g->ncls = 1;
        for (int i = 0; i < g->ua_cnt; i++)
                for (const unsigned char *p = (const unsigned char *)g->ua[i];
                     *p; p++)
                        if (!g->cls[*p])
                                g->cls[*p] = (uint8_t)g->ncls++;
        for (int c = 'A'; c <= 'Z'; c++)
                g->cls[c] = g->cls[c + 32];
        nc = g->ncls;

        g->delta = malloc(maxstates * nc * sizeof(*g->delta));
        g->out = malloc(maxstates * sizeof(*g->out));
        fail = malloc(maxstates * sizeof(*fail));
        queue = malloc(maxstates * sizeof(*queue));
        if (!g->delta || !g->out || !fail || !queue) {
                snprintf(errstr, errstr_size, "out of memory");
                free(fail);
                free(queue);
                return -1;
        }
        memset(g->delta, 0xff, maxstates * nc * sizeof(*g->delta)); /* NIL */
        for (size_t s = 0; s < maxstates; s++)
                g->out[s] = -1;

        /* The trie. */
        g->nstates = 1;
        for (int i = 0; i < g->ua_cnt; i++) {
                uint32_t s = 0;
                for (const unsigned char *p = (const unsigned char *)g->ua[i];
                     *p; p++) {
                        uint32_t *t = &g->delta[(size_t)s * nc + g->cls[*p]];
                        if (*t == NIL)
                                *t = g->nstates++;
                        s = *t;
                }
                if (g->out[s] < 0)
                        g->out[s] = i;
        }

        /* Breadth first, so a state's failure state (shallower) is complete
         * before the state borrows its missing transitions from it. */
        for (uint32_t c = 0; c < nc; c++) {
                uint32_t *t = &g->delta[c];
                if (*t == NIL) {
                        *t = 0;
                } else {
                        fail[*t] = 0;
                        queue[qt++] = *t;
                }
        }
        while (qh < qt) {
                uint32_t s = queue[qh++];
                for (uint32_t c = 0; c < nc; c++) {
                        uint32_t *t = &g->delta[(size_t)s * nc + c];
                        uint32_t f = g->delta[(size_t)fail[s] * nc + c];
                        if (*t == NIL) {
                                *t = f;
                                continue;
                        }
                        fail[*t] = f;
                        if (g->out[*t] < 0)
                                g->out[*t] = g->out[f];
                        queue[qt++] = *t;
                }
        }
        free(fail);
        free(queue);
        /* Sized for one state per pattern byte; shared prefixes need fewer. */
        {
                uint32_t *d = realloc(g->delta, (size_t)g->nstates * nc *
                                                    sizeof(*g->delta));
                int32_t *o = realloc(g->out, g->nstates * sizeof(*g->out));
                if (d)
                        g->delta = d;
                if (o)
                        g->out = o;
        }
        return 0;
}

int sg_givt_ua_match(const sg_givt_t *g, const char *ua)
{
        uint32_t s = 0;

        if (!g || !ua || g->ua_cnt == 0)
                return -1;
        for (const unsigned char *p = (const unsigned char *)ua; *p; p++) {
                s = g->delta[(size_t)s * g->ncls + g->cls[*p]];
                if (g->out[s] >= 0)
                        return g->out[s];
        }
        return -1;
}

const char *sg_givt_ua_pattern(const sg_givt_t *g, int i)
{
        return g && i >= 0 && i < g->ua_cnt ? g->ua[i] : NULL;
}

int sg_givt_ua_count(const sg_givt_t *g)
{
        return g ? g->ua_cnt : 0;
}

/* ------------------------------------------------------------- IP ranges */

static u128 v6_to_u128(const unsigned char b[16])
{
        u128 a = 0;

        for (int i = 0; i < 16; i++)
                a = a << 8 | b[i];
        return a;
}

static void u128_to_v6(u128 a, unsigned char b[16])
{
        for (int i = 15; i >= 0; i--, a >>= 8)
                b[i] = (unsigned char)a;
}

/* IPv4 text, IPv6 text -> one 128-bit address; -1 if neither. */
static int parse_addr(const char *s, u128 *a, int *v4)
{
        unsigned char b[16];

        if (strchr(s, ':')) {
                if (inet_pton(AF_INET6, s, b) != 1)
                        return -1;
                *a = v6_to_u128(b);
                *v4 = 0;
                return 0;
        }
        if (inet_pton(AF_INET, s, b) != 1)
                return -1;
        *a = V4_MAPPED | (u128)b[0] << 24 | (u128)b[1] << 16 | (u128)b[2] << 8 |
             b[3];
        *v4 = 1;
        return 0;
}

static void format_prefix(u128 a, unsigned len, int v4, char *buf, size_t size)
{
        char txt[INET6_ADDRSTRLEN];
        unsigned char b[16];

        u128_to_v6(a, b);
        if (v4)
                inet_ntop(AF_INET, b + 12, txt, sizeof(txt));
        else
                inet_ntop(AF_INET6, b, txt, sizeof(txt));
        snprintf(buf, size, "%s/%u", txt, v4 ? len - 96 : len);
}

static int cidr_line(sg_givt_t *g, char *text, const char *path,
                     unsigned lineno, const char *line, char *errstr,
                     size_t errstr_size)
{
        size_t toklen = strcspn(text, " \t#");
        char tok[64], *slash, *rest = text + toklen;
        unsigned len, bits;
        u128 a, host;
        int v4;

        while (is_blank(*rest))
                rest++;
        if (*rest && *rest != '#') {
                snprintf(errstr, errstr_size,
                         "%s:%u: unexpected text after the prefix: \"%s\"",
                         path, lineno, rest);
                return -1;
        }
        if (toklen >= sizeof(tok)) {
                snprintf(errstr, errstr_size,
                         "%s:%u: \"%.*s\" is not an IPv4 or IPv6 prefix", path,
                         lineno, (int)toklen, text);
                return -1;
        }
        memcpy(tok, text, toklen);
        tok[toklen] = '\0';
        slash = strchr(tok, '/');
        if (slash)
                *slash++ = '\0';
        if (parse_addr(tok, &a, &v4) == -1) {
                snprintf(errstr, errstr_size,
                         "%s:%u: \"%s\" is not an IPv4 or IPv6 address", path,
                         lineno, tok);
                return -1;
        }
        bits = v4 ? 32 : 128;
        len = bits; /* a bare address is one host */
        if (slash) {
                size_t nd = strspn(slash, "0123456789");
                if (nd == 0 || nd > 3 || slash[nd] ||
                    (len = (unsigned)atoi(slash)) > bits) {
                        snprintf(errstr, errstr_size,
                                 "%s:%u: bad prefix length \"/%s\" (IPv%d: "
                                 "0-%u)",
                                 path, lineno, slash, v4 ? 4 : 6, bits);
                        return -1;
                }
        }
        if (v4)
                len += 96;
        host = len == 128 ? 0 : U128_MAX >> len; /* >> 128 is undefined */
        if (a & host) {
                /* Rejected, not masked: "10.1.2.3/8" is more likely a typo
                 * for /32 than a wish to tag 16M addresses. */
                char want[64];
                format_prefix(a & ~host, len, v4, want, sizeof(want));
                snprintf(errstr, errstr_size,
                         "%s:%u: %s/%s has host bits set (the network is %s)",
                         path, lineno, tok, slash ? slash : "", want);
                return -1;
        }
        if (g->pfx_cnt == g->pfx_alloc) {
                size_t na = g->pfx_alloc ? 2 * g->pfx_alloc : 64;
                pfx_t *np = realloc(g->pfx, na * sizeof(*np));
                if (!np) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                g->pfx = np;
                g->pfx_alloc = na;
        }
        g->pfx[g->pfx_cnt++] = (pfx_t){a, a | host, (uint8_t)len, (uint8_t)v4};
        (void)line;
        return 0;
}

/* Outer prefixes before the ones they hold. */
static int pfx_cmp(const void *x, const void *y)
{
        const pfx_t *a = x, *b = y;

        if (a->start != b->start)
                return a->start < b->start ? -1 : 1;
        return (int)a->len - (int)b->len;
}

static void bp_emit(sg_givt_t *g, u128 pos, int32_t label)
{
        bp_t *last = g->bp_cnt ? &g->bp[g->bp_cnt - 1] : NULL;

        if (last && last->start == pos) {
                last->label = label;
                if (g->bp_cnt >= 2 && last[-1].label == label)
                        g->bp_cnt--;
                return;
        }
        if (last ? last->label == label : label == -1)
                return;
        g->bp[g->bp_cnt++] = (bp_t){pos, label};
}

/* A stack of open prefixes: when the next prefix starts past the innermost
 * one's end, that one closes and its parent (or nothing) resumes. */
static void bp_pop(sg_givt_t *g, uint32_t *stack, size_t *sp)
{
        const pfx_t *p = &g->pfx[stack[--*sp]];

        if (p->end != U128_MAX)
                bp_emit(g, p->end + 1, *sp ? (int32_t)stack[*sp - 1] : -1);
}

static int cidr_build(sg_givt_t *g, char *errstr, size_t errstr_size)
{
        uint32_t *stack;
        size_t sp = 0, n = 0;

        if (g->pfx_cnt == 0)
                return 0;
        qsort(g->pfx, g->pfx_cnt, sizeof(*g->pfx), pfx_cmp);
        for (size_t i = 0; i < g->pfx_cnt; i++)
                if (n == 0 || g->pfx[i].start != g->pfx[n - 1].start ||
                    g->pfx[i].len != g->pfx[n - 1].len)
                        g->pfx[n++] = g->pfx[i];
        g->pfx_cnt = n;
        g->bp = malloc((2 * n + 1) * sizeof(*g->bp));
        stack = malloc(n * sizeof(*stack));
        if (!g->bp || !stack) {
                free(stack);
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (size_t i = 0; i < n; i++) {
                while (sp && g->pfx[stack[sp - 1]].end < g->pfx[i].start)
                        bp_pop(g, stack, &sp);
                stack[sp++] = (uint32_t)i;
                bp_emit(g, g->pfx[i].start, (int32_t)i);
        }
        while (sp)
                bp_pop(g, stack, &sp);
        free(stack);
        return 0;
}

int sg_givt_ip_lookup(const sg_givt_t *g, const char *ip, char *prefix,
                      size_t prefix_size)
{
        size_t lo = 0, hi;
        int32_t label;
        u128 a;
        int v4;

        if (!ip || parse_addr(ip, &a, &v4) == -1)
                return -1;
        if (!g || g->bp_cnt == 0)
                return 0;
        hi = g->bp_cnt;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (g->bp[mid].start <= a)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == 0 || (label = g->bp[lo - 1].label) < 0)
                return 0;
        if (prefix && prefix_size)
                format_prefix(g->pfx[label].start, g->pfx[label].len,
                              g->pfx[label].v4, prefix, prefix_size);
        return 1;
}

int sg_givt_ip_match(const sg_givt_t *g, const char *ip)
{
        return sg_givt_ip_lookup(g, ip, NULL, 0);
}

size_t sg_givt_cidr_count(const sg_givt_t *g)
{
        return g ? g->pfx_cnt : 0;
}

/* ------------------------------------------------------------- lifecycle */

sg_givt_t *sg_givt_new(const char *ua_file, const char *cidr_file,
                       int tag_missing_ua, char *errstr, size_t errstr_size)
{
        sg_givt_t *g = calloc(1, sizeof(*g));

        if (!g) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        g->tag_missing_ua = tag_missing_ua;
        if (ua_file) {
                if (load_lines(g, ua_file, ua_line, errstr, errstr_size) == -1)
                        goto err;
        } else {
                for (const char *const *p = sg_givt_builtin_ua; *p; p++)
                        if (ua_add(g, *p, errstr, errstr_size) == -1)
                                goto err;
        }
        if (ua_build(g, errstr, errstr_size) == -1)
                goto err;
        if (cidr_file &&
            load_lines(g, cidr_file, cidr_line, errstr, errstr_size) == -1)
                goto err;
        if (cidr_build(g, errstr, errstr_size) == -1)
                goto err;
        return g;
err:
        sg_givt_destroy(g);
        return NULL;
}

void sg_givt_destroy(sg_givt_t *g)
{
        if (!g)
                return;
        for (int i = 0; i < g->ua_cnt; i++)
                free(g->ua[i]);
        free(g->ua);
        free(g->delta);
        free(g->out);
        free(g->pfx);
        free(g->bp);
        free(g);
}

/* --------------------------------------------------------------- tagging */

void sg_givt_mark(sg_event_t *ev, uint32_t bit, const char *reason)
{
        ev->ivt_mask |= bit;
        if (ev->ivt_reason[0] == '\0' && reason)
                snprintf(ev->ivt_reason, sizeof(ev->ivt_reason), "%s", reason);
}

void sg_givt_tag(const sg_givt_t *g, sg_event_t *ev)
{
        if (!g)
                return;
        /* Marked in the documented order: the first mark sets the reason. */
        if (ev->user_agent[0] != '\0') {
                if (sg_givt_ua_match(g, ev->user_agent) >= 0)
                        sg_givt_mark(ev, SG_IVT_BOT_UA, SG_IVT_REASON_BOT_UA);
        } else if (g->tag_missing_ua) {
                sg_givt_mark(ev, SG_IVT_NO_UA, SG_IVT_REASON_NO_UA);
        }
        if (ev->ip[0] != '\0' && g->bp_cnt && sg_givt_ip_match(g, ev->ip) == 1)
                sg_givt_mark(ev, SG_IVT_DC_IP, SG_IVT_REASON_DC_IP);
}
