#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "givt.h"

/* A list file with these bytes; the caller unlinks and frees the path. */
static char *list_file(const char *bytes, size_t len)
{
        char *path = strdup("/tmp/sg_givt_test.XXXXXX");
        int fd = mkstemp(path);

        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
        close(fd);
        return path;
}

#define LIST_FILE(s) list_file(s, sizeof(s) - 1)

static void drop(char *path)
{
        unlink(path);
        free(path);
}

static sg_givt_t *givt(const char *ua_file, const char *cidr_file,
                       int tag_missing_ua)
{
        char err[512] = "";
        sg_givt_t *g =
            sg_givt_new(ua_file, cidr_file, tag_missing_ua, err, sizeof(err));

        cr_assert_not_null(g, "%s", err);
        return g;
}

/* sg_givt_new must fail; the message is "<path><suffix>". */
static void expect_load_error(const char *ua_bytes, size_t ua_len,
                              const char *cidr_bytes, size_t cidr_len,
                              const char *suffix)
{
        char *path = ua_bytes ? list_file(ua_bytes, ua_len)
                              : list_file(cidr_bytes, cidr_len);
        char err[512] = "", want[512];

        snprintf(want, sizeof(want), "%s%s", path, suffix);
        cr_expect_null(sg_givt_new(ua_bytes ? path : NULL,
                                   ua_bytes ? NULL : path, 1, err,
                                   sizeof(err)));
        cr_expect_str_eq(err, want);
        drop(path);
}

#define UA_ERROR(s, suffix) expect_load_error(s, sizeof(s) - 1, NULL, 0, suffix)
#define CIDR_ERROR(s, suffix)                                                  \
        expect_load_error(NULL, 0, s, sizeof(s) - 1, suffix)

static sg_event_t event(const char *ua, const char *ip)
{
        sg_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.type = SG_EV_CLICK;
        strcpy(ev.event_id, "e1");
        if (ua) {
                ev.has_user_agent = 1;
                snprintf(ev.user_agent, sizeof(ev.user_agent), "%s", ua);
        }
        if (ip) {
                ev.has_ip = 1;
                snprintf(ev.ip, sizeof(ev.ip), "%s", ip);
        }
        return ev;
}

/* ----------------------------------------------------------- user agents */

Test(givt, builtin_list_is_the_shipped_default_file)
{
        sg_givt_t *file = givt(SG_SOURCE_DIR "/config/bot_ua.txt", NULL, 0);
        sg_givt_t *builtin = givt(NULL, NULL, 0);
        int n = 0;

        while (sg_givt_builtin_ua[n])
                n++;
        cr_assert_eq(sg_givt_ua_count(builtin), n);
        cr_assert_eq(sg_givt_ua_count(file), n);
        for (int i = 0; i < n; i++) {
                cr_expect_str_eq(sg_givt_ua_pattern(file, i),
                                 sg_givt_builtin_ua[i], "entry %d", i);
                cr_expect_str_eq(sg_givt_ua_pattern(builtin, i),
                                 sg_givt_builtin_ua[i], "entry %d", i);
        }
        cr_assert_null(sg_givt_ua_pattern(builtin, n));
        cr_assert_null(sg_givt_ua_pattern(builtin, -1));
        sg_givt_destroy(file);
        sg_givt_destroy(builtin);
}

Test(givt, builtin_list_tags_declared_bots_libraries_and_headless_browsers)
{
        static const struct {
                const char *ua;
                const char *pattern; /* NULL: a real browser, no match */
        } cases[] = {
            {"Mozilla/5.0 (compatible; Googlebot/2.1; "
             "+http://www.google.com/bot.html)",
             "googlebot"},
            {"Mozilla/5.0 (compatible; bingbot/2.0; "
             "+http://www.bing.com/bingbot.htm)",
             "bingbot"},
            {"Mozilla/5.0 (compatible; Yahoo! Slurp; "
             "http://help.yahoo.com/help/us/ysearch/slurp)",
             "slurp"},
            {"Mozilla/5.0 (compatible; AhrefsBot/7.0; "
             "+http://ahrefs.com/robot/)",
             "ahrefsbot"},
            {"Mozilla/5.0 (compatible; SemrushBot/7~bl; "
             "+http://www.semrush.com/bot.html)",
             "semrushbot"},
            {"Mozilla/5.0 (compatible; Baiduspider/2.0; "
             "+http://www.baidu.com/search/spider.html)",
             "baiduspider"},
            {"facebookexternalhit/1.1 "
             "(+http://www.facebook.com/externalhit_uatext.php)",
             "facebookexternalhit"},
            {"Twitterbot/1.0", "twitterbot"},
            {"curl/8.4.0", "curl/"},
            {"Wget/1.21.3", "wget/"},
            {"python-requests/2.31.0", "python-requests"},
            {"Python-urllib/3.11", "python-urllib"},
            {"Go-http-client/1.1", "go-http-client"},
            {"Java/17.0.2", "java/"},
            {"okhttp/4.12.0", "okhttp"},
            {"axios/1.6.2", "axios/"},
            {"Scrapy/2.11.0 (+https://scrapy.org)", "scrapy"},
            {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
             "like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
             "headlesschrome"},
            {"Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, "
             "like Gecko) PhantomJS/2.1.1 Safari/538.1",
             "phantomjs"},
            {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
             "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
             "Mobile/15E148 Safari/604.1",
             NULL},
            {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
             NULL},
            {"Mozilla/5.0 (Linux; Android 13; Cubot KingKong 9) "
             "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
             "Mobile Safari/537.36",
             NULL},
            {"", NULL},
        };
        sg_givt_t *g = givt(NULL, NULL, 0);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int m = sg_givt_ua_match(g, cases[i].ua);
                if (cases[i].pattern)
                        cr_expect_str_eq(sg_givt_ua_pattern(g, m),
                                         cases[i].pattern, "%s", cases[i].ua);
                else
                        cr_expect_eq(m, -1, "%s matched %s", cases[i].ua,
                                     sg_givt_ua_pattern(g, m));
        }
        cr_assert_eq(sg_givt_ua_match(g, NULL), -1);
        sg_givt_destroy(g);
}

Test(givt, ua_file_patterns_match_case_insensitively_as_substrings)
{
        char *path = LIST_FILE("# comment\n"
                               "\n"
                               "   \t\n"
                               "  FooBot/  \r\n"
                               "   # indented comment\n"
                               "evil crawler\t\n"
                               "a#b\n");
        sg_givt_t *g = givt(path, NULL, 0);

        cr_assert_eq(sg_givt_ua_count(g), 3);
        cr_assert_str_eq(sg_givt_ua_pattern(g, 0), "foobot/");
        cr_assert_str_eq(sg_givt_ua_pattern(g, 1), "evil crawler");
        cr_assert_str_eq(sg_givt_ua_pattern(g, 2), "a#b");
        cr_assert_eq(sg_givt_ua_match(g, "foobot/1.0"), 0);
        cr_assert_eq(sg_givt_ua_match(g, "Mozilla FOOBOT/2"), 0);
        cr_assert_eq(sg_givt_ua_match(g, "x fOoBoT/"), 0);
        cr_assert_eq(sg_givt_ua_match(g, "FooBot 1.0"), -1);
        cr_assert_eq(sg_givt_ua_match(g, "An EVIL CRAWLER"), 1);
        cr_assert_eq(sg_givt_ua_match(g, "evil  crawler"), -1);
        cr_assert_eq(sg_givt_ua_match(g, "xa#bx"), 2);
        /* Not on the built-in list any more: the file replaces it. */
        cr_assert_eq(sg_givt_ua_match(g, "curl/8.0"), -1);
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, ua_matching_follows_failure_links_across_overlaps)
{
        char *path = LIST_FILE("abcde\ncdx\nshe\nhe\nhers\n");
        sg_givt_t *g = givt(path, NULL, 0);

        cr_assert_eq(sg_givt_ua_match(g, "ABCDX"), 1); /* cdx via abcd */
        cr_assert_eq(sg_givt_ua_match(g, "abcdabcde"), 0);
        cr_assert_eq(sg_givt_ua_match(g, "ushers"), 2); /* she ends first */
        cr_assert_eq(sg_givt_ua_match(g, "xhe"), 3);
        cr_assert_eq(sg_givt_ua_match(g, "abcd"), -1);
        cr_assert_eq(sg_givt_ua_match(g, "\xff\x80he"), 3); /* high bytes */
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, ua_matching_agrees_with_strcasestr_on_random_text)
{
        char *path = LIST_FILE("ab\naab\nbab\nBBA\nabab\nc/a\nca\n");
        sg_givt_t *g = givt(path, NULL, 0);
        static const char alphabet[] = "abABc/x";
        uint64_t x = 42;
        char ua[24];

        for (int i = 0; i < 50000; i++) {
                int len, any = 0, m;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                len = (int)(x % 20);
                for (int j = 0; j < len; j++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        ua[j] = alphabet[x % (sizeof(alphabet) - 1)];
                }
                ua[len] = '\0';
                for (int k = 0; k < sg_givt_ua_count(g); k++)
                        any |= strcasestr(ua, sg_givt_ua_pattern(g, k)) != NULL;
                m = sg_givt_ua_match(g, ua);
                cr_assert_eq(m >= 0, any, "\"%s\"", ua);
                if (m >= 0)
                        cr_assert_not_null(
                            strcasestr(ua, sg_givt_ua_pattern(g, m)));
        }
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, an_empty_ua_file_matches_nothing)
{
        char *path = LIST_FILE("# nothing here\n\n");
        sg_givt_t *g = givt(path, NULL, 0);

        cr_assert_eq(sg_givt_ua_count(g), 0);
        cr_assert_eq(sg_givt_ua_match(g, "curl/8.0"), -1);
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, rejects_bad_ua_files_naming_file_and_line)
{
        char longest[SG_GIVT_LINE_MAX + 2], too_long[SG_GIVT_LINE_MAX + 3];
        char *path;
        sg_givt_t *g;

        UA_ERROR("ok\n\tfoo\x01"
                 "bar\n",
                 ":2: byte 0x01 at column 5 is not printable ASCII");
        UA_ERROR("# ok\ncaf\xc3\xa9\n",
                 ":2: byte 0xc3 at column 4 is not printable ASCII");
        UA_ERROR("ok\nfoo\tbar\n",
                 ":2: byte 0x09 at column 4 is not printable ASCII");
        UA_ERROR("a\0b\n", ":1: NUL byte");

        memset(too_long, 'a', SG_GIVT_LINE_MAX + 1);
        strcpy(too_long + SG_GIVT_LINE_MAX + 1, "\n");
        expect_load_error(too_long, strlen(too_long), NULL, 0,
                          ":1: line longer than 511 bytes");

        /* The longest line is fine, with or without a final newline. */
        memset(longest, 'a', SG_GIVT_LINE_MAX);
        longest[SG_GIVT_LINE_MAX] = '\0';
        path = list_file(longest, strlen(longest));
        g = givt(path, NULL, 0);
        cr_assert_eq(sg_givt_ua_count(g), 1);
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, reports_a_missing_list_file)
{
        char err[256];

        cr_assert_null(
            sg_givt_new("/nonexistent/bot_ua.txt", NULL, 0, err, sizeof(err)));
        cr_assert_str_eq(err,
                         "/nonexistent/bot_ua.txt: No such file or directory");
        cr_assert_null(
            sg_givt_new(NULL, "/nonexistent/dc.txt", 0, err, sizeof(err)));
        cr_assert_str_eq(err, "/nonexistent/dc.txt: No such file or directory");
        cr_assert_null(sg_givt_new("/", NULL, 0, err, sizeof(err)));
        cr_assert_str_eq(err, "/: read error: Is a directory");
        sg_givt_destroy(NULL);
}

/* ------------------------------------------------------------- IP ranges */

Test(givt, rejects_bad_cidr_lines_naming_file_and_line)
{
        CIDR_ERROR("10.0.0.0/8\n# c\n300.1.2.0/24\n",
                   ":3: \"300.1.2.0\" is not an IPv4 or IPv6 address");
        CIDR_ERROR("10.0.0/8\n", ":1: \"10.0.0\" is not an IPv4 or IPv6 "
                                 "address");
        CIDR_ERROR("fe80::1%eth0\n",
                   ":1: \"fe80::1%eth0\" is not an IPv4 or IPv6 address");
        CIDR_ERROR("2001:db8::g/32\n",
                   ":1: \"2001:db8::g\" is not an IPv4 or IPv6 address");
        CIDR_ERROR("10.0.0.0/33\n", ":1: bad prefix length \"/33\" (IPv4: "
                                    "0-32)");
        CIDR_ERROR("2001:db8::/129\n",
                   ":1: bad prefix length \"/129\" (IPv6: 0-128)");
        CIDR_ERROR("10.0.0.0/\n", ":1: bad prefix length \"/\" (IPv4: 0-32)");
        CIDR_ERROR("10.0.0.0/8x\n",
                   ":1: bad prefix length \"/8x\" (IPv4: 0-32)");
        CIDR_ERROR("10.0.0.0/-8\n",
                   ":1: bad prefix length \"/-8\" (IPv4: 0-32)");
        CIDR_ERROR("10.0.0.0/0008\n",
                   ":1: bad prefix length \"/0008\" (IPv4: 0-32)");
        CIDR_ERROR("\n10.1.2.3/8   # typo?\n",
                   ":2: 10.1.2.3/8 has host bits set (the network is "
                   "10.0.0.0/8)");
        CIDR_ERROR("2001:db8::1/32\n", ":1: 2001:db8::1/32 has host bits set "
                                       "(the network is 2001:db8::/32)");
        CIDR_ERROR("3.0.0.0/15 AWS\n",
                   ":1: unexpected text after the prefix: \"AWS\"");
        CIDR_ERROR("192.0.2.0 /24\n",
                   ":1: unexpected text after the prefix: \"/24\"");
        CIDR_ERROR("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:"
                   "cccc:dddd/128\n",
                   ":1: \"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:"
                   "bbbb:cccc:dddd/128\" is not an IPv4 or IPv6 prefix");
}

static const char lpm_list[] =
    "# nested ranges, out of order on purpose\n"
    "10.1.2.128/25\n"
    "10.0.0.0/8        # outer\n"
    "10.1.2.0/24# inner, comment without a blank\n"
    "10.0.0.0/8        # listed twice\n"
    "192.0.2.7         # a bare address is one host\n"
    "2001:db8:1::/48\n"
    "2001:db8::/32\n"
    "2001:db8:1:2::1\n";

Test(givt, finds_the_longest_prefix_for_v4_and_v6_at_the_boundaries)
{
        static const struct {
                const char *ip;
                int rc;
                const char *prefix;
        } cases[] = {
            {"10.0.0.0", 1, "10.0.0.0/8"},
            {"10.255.255.255", 1, "10.0.0.0/8"},
            {"9.255.255.255", 0, NULL},
            {"11.0.0.0", 0, NULL},
            {"10.1.1.255", 1, "10.0.0.0/8"},
            {"10.1.2.0", 1, "10.1.2.0/24"},
            {"10.1.2.127", 1, "10.1.2.0/24"},
            {"10.1.2.128", 1, "10.1.2.128/25"},
            {"10.1.2.255", 1, "10.1.2.128/25"},
            {"10.1.3.0", 1, "10.0.0.0/8"},
            {"192.0.2.6", 0, NULL},
            {"192.0.2.7", 1, "192.0.2.7/32"},
            {"192.0.2.8", 0, NULL},
            /* IPv4-mapped IPv6 is the IPv4 address */
            {"::ffff:10.1.2.3", 1, "10.1.2.0/24"},
            {"::FFFF:a01:203", 1, "10.1.2.0/24"},
            {"::ffff:11.0.0.0", 0, NULL},
            /* ...but IPv4-compatible (deprecated) and NAT64 forms are not */
            {"::10.1.2.3", 0, NULL},
            {"64:ff9b::10.1.2.3", 0, NULL},
            {"2001:db8::", 1, "2001:db8::/32"},
            {"2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", 1, "2001:db8::/32"},
            {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 0, NULL},
            {"2001:db9::", 0, NULL},
            {"2001:db8:1::", 1, "2001:db8:1::/48"},
            {"2001:db8:1:ffff:ffff:ffff:ffff:ffff", 1, "2001:db8:1::/48"},
            {"2001:db8:1:2::1", 1, "2001:db8:1:2::1/128"},
            {"2001:db8:1:2::2", 1, "2001:db8:1::/48"},
            {"2001:db8:2::", 1, "2001:db8::/32"},
            {"::", 0, NULL},
            {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, NULL},
            /* not addresses */
            {"", -1, NULL},
            {"10.0.0", -1, NULL},
            {"10.0.0.256", -1, NULL},
            {" 10.0.0.1", -1, NULL},
            {"10.0.0.1 ", -1, NULL},
            {"10.0.0.1/32", -1, NULL},
            {"2001:db8::g", -1, NULL},
            {"fe80::1%eth0", -1, NULL},
            {"localhost", -1, NULL},
        };
        char *path = LIST_FILE(lpm_list);
        sg_givt_t *g = givt(NULL, path, 0);

        cr_assert_eq(sg_givt_cidr_count(g), 7);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char prefix[64] = "";
                int rc =
                    sg_givt_ip_lookup(g, cases[i].ip, prefix, sizeof(prefix));
                cr_expect_eq(rc, cases[i].rc, "%s: %d", cases[i].ip, rc);
                cr_expect_str_eq(prefix, cases[i].prefix ? cases[i].prefix : "",
                                 "%s", cases[i].ip);
                cr_expect_eq(sg_givt_ip_match(g, cases[i].ip), cases[i].rc,
                             "%s", cases[i].ip);
        }
        cr_assert_eq(sg_givt_ip_match(g, NULL), -1);
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, handles_prefixes_at_both_ends_of_the_address_space)
{
        char *path = LIST_FILE("::/128\n"
                               "ffff::/16\n"
                               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124\n"
                               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n"
                               "0.0.0.0/8\n"
                               "255.255.255.255/32\n");
        sg_givt_t *g = givt(NULL, path, 0);
        char p[64];

        cr_assert_eq(sg_givt_ip_lookup(g, "::", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "::/128");
        cr_assert_eq(sg_givt_ip_match(g, "::1"), 0);
        cr_assert_eq(sg_givt_ip_lookup(g,
                                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
                                       "ffff",
                                       p, sizeof(p)),
                     1);
        cr_assert_str_eq(p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
        cr_assert_eq(sg_givt_ip_lookup(g,
                                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
                                       "fffe",
                                       p, sizeof(p)),
                     1);
        cr_assert_str_eq(p, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124");
        cr_assert_eq(sg_givt_ip_lookup(g, "ffff::1", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "ffff::/16");
        cr_assert_eq(sg_givt_ip_match(g, "fffe:ffff::"), 0);
        cr_assert_eq(sg_givt_ip_lookup(g, "0.255.255.255", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "0.0.0.0/8");
        cr_assert_eq(sg_givt_ip_match(g, "1.0.0.0"), 0);
        cr_assert_eq(sg_givt_ip_match(g, "255.255.255.254"), 0);
        cr_assert_eq(sg_givt_ip_lookup(g, "255.255.255.255", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "255.255.255.255/32");
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, treats_ipv4_as_ipv4_mapped_ipv6_in_files_too)
{
        char *path = LIST_FILE("::ffff:192.0.2.0/120\n");
        sg_givt_t *g = givt(NULL, path, 0);
        char p[64];

        cr_assert_eq(sg_givt_ip_lookup(g, "192.0.2.1", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "::ffff:192.0.2.0/120");
        cr_assert_eq(sg_givt_ip_match(g, "192.0.3.1"), 0);
        sg_givt_destroy(g);
        drop(path);

        /* Consequently ::/0 holds every IPv4 address as well. */
        path = LIST_FILE("::/0\n");
        g = givt(NULL, path, 0);
        cr_assert_eq(sg_givt_ip_lookup(g, "192.0.2.1", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "::/0");
        sg_givt_destroy(g);
        drop(path);

        path = LIST_FILE("0.0.0.0/0\n");
        g = givt(NULL, path, 0);
        cr_assert_eq(sg_givt_ip_lookup(g, "203.0.113.9", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "0.0.0.0/0");
        cr_assert_eq(sg_givt_ip_match(g, "2001:db8::1"), 0);
        sg_givt_destroy(g);
        drop(path);
}

/* Random nested prefixes inside 10.0.0.0/16 against a linear scan. */
Test(givt, longest_prefix_agrees_with_a_linear_scan)
{
        enum { NP = 300 };
        uint32_t net[NP];
        unsigned len[NP];
        char list[NP * 24] = "", line[32];
        uint64_t x = 7;
        char *path;
        sg_givt_t *g;

        for (int i = 0; i < NP; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                len[i] = 16 + (unsigned)(x % 17);
                net[i] = (0x0a000000u | (uint32_t)(x >> 32) % 65536) &
                         (uint32_t)(~0ull << (32 - len[i]));
                snprintf(line, sizeof(line), "%u.%u.%u.%u/%u\n", net[i] >> 24,
                         net[i] >> 16 & 255, net[i] >> 8 & 255, net[i] & 255,
                         len[i]);
                strcat(list, line);
        }
        path = list_file(list, strlen(list));
        g = givt(NULL, path, 0);
        for (uint32_t a = 0x09ffff00u; a <= 0x0a010100u; a++) {
                int best = -1;
                char ip[20], got[64] = "", want[64] = "";

                for (int i = 0; i < NP; i++)
                        if ((a & (uint32_t)(~0ull << (32 - len[i]))) ==
                                net[i] &&
                            (best < 0 || len[i] > len[best]))
                                best = i;
                snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a >> 24, a >> 16 & 255,
                         a >> 8 & 255, a & 255);
                if (best >= 0)
                        snprintf(want, sizeof(want), "%u.%u.%u.%u/%u",
                                 net[best] >> 24, net[best] >> 16 & 255,
                                 net[best] >> 8 & 255, net[best] & 255,
                                 len[best]);
                cr_assert_eq(sg_givt_ip_lookup(g, ip, got, sizeof(got)),
                             best >= 0, "%s", ip);
                cr_assert_str_eq(got, want, "%s", ip);
        }
        sg_givt_destroy(g);
        drop(path);
}

Test(givt, loads_the_shipped_example_cidr_file)
{
        sg_givt_t *g = givt(NULL, SG_SOURCE_DIR "/config/dc_cidr.txt", 0);
        char p[64];

        cr_assert_eq(sg_givt_cidr_count(g), 6);
        cr_assert_eq(sg_givt_ip_lookup(g, "203.0.113.200", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "203.0.113.128/25");
        cr_assert_eq(sg_givt_ip_lookup(g, "2001:db8:1::9", p, sizeof(p)), 1);
        cr_assert_str_eq(p, "2001:db8:1::/48");
        cr_assert_eq(sg_givt_ip_match(g, "8.8.8.8"), 0);
        sg_givt_destroy(g);
}

Test(givt, without_a_cidr_file_no_ip_matches)
{
        sg_givt_t *g = givt(NULL, NULL, 0);

        cr_assert_eq(sg_givt_cidr_count(g), 0);
        cr_assert_eq(sg_givt_ip_match(g, "192.0.2.1"), 0);
        cr_assert_eq(sg_givt_ip_match(g, "not-an-ip"), -1);
        sg_givt_destroy(g);
}

/* --------------------------------------------------------------- tagging */

Test(givt, tags_bits_and_the_first_reason_in_a_fixed_order)
{
        static const struct {
                const char *ua, *ip; /* NULL: field absent */
                int tag_missing_ua;
                uint32_t mask_before;
                const char *reason_before;
                uint32_t mask;
                const char *reason;
        } cases[] = {
            {"curl/8.4.0", "192.0.2.1", 1, 0, "", SG_IVT_BOT_UA | SG_IVT_DC_IP,
             "bot_ua"},
            {"curl/8.4.0", "8.8.8.8", 1, 0, "", SG_IVT_BOT_UA, "bot_ua"},
            {NULL, "192.0.2.1", 1, 0, "", SG_IVT_NO_UA | SG_IVT_DC_IP, "no_ua"},
            {"", "192.0.2.1", 1, 0, "", SG_IVT_NO_UA | SG_IVT_DC_IP, "no_ua"},
            {NULL, "192.0.2.1", 0, 0, "", SG_IVT_DC_IP, "dc_ip"},
            {NULL, NULL, 1, 0, "", SG_IVT_NO_UA, "no_ua"},
            {NULL, NULL, 0, 0, "", 0, ""},
            {"Mozilla/5.0 Safari", "2001:db8::5", 1, 0, "", SG_IVT_DC_IP,
             "dc_ip"},
            {"Mozilla/5.0 Safari", "::ffff:192.0.2.9", 1, 0, "", SG_IVT_DC_IP,
             "dc_ip"},
            {"Mozilla/5.0 Safari", "8.8.8.8", 1, 0, "", 0, ""},
            {"Mozilla/5.0 Safari", "not-an-ip", 1, 0, "", 0, ""},
            /* an earlier reason is kept, the bits add up */
            {"curl/8.4.0", "192.0.2.1", 1, SG_IVT_DUP_CLICK, "dup_click",
             SG_IVT_DUP_CLICK | SG_IVT_BOT_UA | SG_IVT_DC_IP, "dup_click"},
        };
        char *path = LIST_FILE("192.0.2.0/24\n2001:db8::/32\n");
        sg_givt_t *tag = givt(NULL, path, 1), *notag = givt(NULL, path, 0);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                sg_event_t ev = event(cases[i].ua, cases[i].ip);
                ev.ivt_mask = cases[i].mask_before;
                strcpy(ev.ivt_reason, cases[i].reason_before);
                sg_givt_tag(cases[i].tag_missing_ua ? tag : notag, &ev);
                cr_expect_eq(ev.ivt_mask, cases[i].mask, "case %zu: 0x%x", i,
                             ev.ivt_mask);
                cr_expect_str_eq(ev.ivt_reason, cases[i].reason, "case %zu", i);
        }
        sg_givt_destroy(tag);
        sg_givt_destroy(notag);
        drop(path);
}

Test(givt, mark_adds_a_bit_and_keeps_the_first_reason)
{
        sg_event_t ev = event("Mozilla/5.0", NULL);

        sg_givt_mark(&ev, SG_IVT_DUP_CLICK, SG_IVT_REASON_DUP_CLICK);
        cr_assert_eq(ev.ivt_mask, SG_IVT_DUP_CLICK);
        cr_assert_str_eq(ev.ivt_reason, "dup_click");
        sg_givt_mark(&ev, SG_IVT_DC_IP, SG_IVT_REASON_DC_IP);
        cr_assert_eq(ev.ivt_mask, SG_IVT_DUP_CLICK | SG_IVT_DC_IP);
        cr_assert_str_eq(ev.ivt_reason, "dup_click");
}

Test(givt, tag_with_no_lists_leaves_the_event_alone)
{
        sg_event_t ev = event("curl/8.4.0", "192.0.2.1");

        sg_givt_tag(NULL, &ev);
        cr_assert_eq(ev.ivt_mask, 0);
        cr_assert_str_eq(ev.ivt_reason, "");
}
