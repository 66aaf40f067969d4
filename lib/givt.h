/*
 * List-based general invalid traffic (GIVT): declared bots by user agent,
 * data-center IP ranges, missing user agents. The lists are loaded once by
 * sg_givt_new; tagging an event is then read-only, allocation-free and
 * safe to share between threads. File formats: docs/givt.md.
 */
#ifndef SG_GIVT_H
#define SG_GIVT_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* sg_event_t.ivt_reason values (the first reason found). */
#define SG_IVT_REASON_BOT_UA    "bot_ua"
#define SG_IVT_REASON_NO_UA     "no_ua"
#define SG_IVT_REASON_DC_IP     "dc_ip"
#define SG_IVT_REASON_DUP_CLICK "dup_click"

/* Longest line of a list file, without its newline. A longer UA pattern
 * could never match an event's user_agent (SG_UA_LEN - 1 bytes). */
#define SG_GIVT_LINE_MAX     (SG_UA_LEN - 1)
#define SG_GIVT_UA_MAX       4096  /* patterns */
#define SG_GIVT_UA_BYTES_MAX 65536 /* total pattern bytes */

/* The built-in user-agent patterns (lower case, NULL-terminated): the same
 * entries as config/bot_ua.txt. */
extern const char *const sg_givt_builtin_ua[];

typedef struct sg_givt sg_givt_t;

/*
 * Loads the lists: ua_file (NULL = the built-in patterns) and cidr_file
 * (NULL = no data-center ranges). tag_missing_ua: tag events without a user
 * agent as SG_IVT_NO_UA. NULL with errstr filled on a bad file; errors
 * in a line read "<file>:<line>: <what is wrong>".
 */
sg_givt_t *sg_givt_new(const char *ua_file, const char *cidr_file,
                       int tag_missing_ua, char *errstr, size_t errstr_size);
void sg_givt_destroy(sg_givt_t *g); /* NULL is fine */

/*
 * Adds to ev->ivt_mask: SG_IVT_BOT_UA (the user agent contains a pattern),
 * SG_IVT_NO_UA (user agent missing or "", if tag_missing_ua), SG_IVT_DC_IP
 * (ev->ip in a listed range). Sets ev->ivt_reason to the first reason found
 * in that order (bot_ua, no_ua, dc_ip) unless it is set already, so an
 * earlier check keeps its reason. g NULL: nothing is tagged.
 */
void sg_givt_tag(const sg_givt_t *g, sg_event_t *ev);

/* Sets bit in ev->ivt_mask and ev->ivt_reason if still empty, e.g. for a dup
 * click: sg_givt_mark(ev, SG_IVT_DUP_CLICK, SG_IVT_REASON_DUP_CLICK). */
void sg_givt_mark(sg_event_t *ev, uint32_t bit, const char *reason);

/*
 * Index of a pattern contained in ua, ASCII case-insensitively (the one whose
 * match ends first), or -1; NULL ua is -1. O(strlen(ua)) whatever the
 * number of patterns: an Aho-Corasick automaton, case folded into its
 * alphabet, so the UA is not copied.
 */
int sg_givt_ua_match(const sg_givt_t *g, const char *ua);
const char *sg_givt_ua_pattern(const sg_givt_t *g, int i); /* NULL if bad i */
int sg_givt_ua_count(const sg_givt_t *g);

/*
 * 1 if ip (IPv4 dotted quad or IPv6 text) is in a listed range, 0 if not, -1
 * if ip is not an address. IPv4 is handled as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so "::ffff:192.0.2.1" and "192.0.2.1" are the same
 * address. O(log n) over n ranges, plus inet_pton.
 */
int sg_givt_ip_match(const sg_givt_t *g, const char *ip);

/* As sg_givt_ip_match, and on a match writes the longest listed prefix that
 * holds ip, in canonical text ("192.0.2.0/24", "2001:db8::/32"). */
int sg_givt_ip_lookup(const sg_givt_t *g, const char *ip, char *prefix,
                      size_t prefix_size);
size_t sg_givt_cidr_count(const sg_givt_t *g); /* distinct prefixes */

#endif
