/* test_proxyproto.c: unit tests for the PROXY protocol parser and encoders (src/proxyproto). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxyproto/parse.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"
/* 192.0.2.1:51234 > 198.51.100.2:443 */
#define ADDR4  "\xc0\x00\x02\x01\xc6\x33\x64\x02\xc8\x22\x01\xbb"
#define BOTH   (TP_PP_V1 | TP_PP_V2)
#define NTLV   16
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

static tp_pp_tlv_t tlv_store[NTLV];

/* The spec's longest v1 line. */
static const char unknown_107[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

/* Parses with both versions, the default v2 limit and the shared TLV storage. */
static int parse(const uint8_t *b, size_t n, tp_proxy_header_t *h, const char **reason) {
    return tp__pp_parse(b, n, BOTH, 0, h, tlv_store, NTLV, reason);
}

static void expect_str(tp_str_t s, const char *want) {
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void expect_mem(tp_str_t s, const void *want, size_t n) {
    assert_non_null(s.ptr);
    assert_int_equal(s.len, n);
    assert_memory_equal(s.ptr, want, n);
}

static void expect_addr(const tp_addr_t *a, const char *want) {
    tp_addr_t w;
    assert_int_equal(tp_addr_parse(&w, want, false), 0);
    char got[TP_ADDR_STRLEN];
    if (!tp_addr_eq(a, &w))
        fail_msg("address %s, wanted %s", tp_addr_format(a, got, sizeof(got)), want);
}

/* A v2 header under construction. */
typedef struct build {
    uint8_t b[2048];
    size_t n;
    size_t crc_at; /* 0: no CRC32C TLV */
} build_t;

static void put(build_t *b, const void *p, size_t n) {
    assert_true(b->n + n <= sizeof(b->b));
    if (n == 0)
        return;
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put16(build_t *b, size_t v) {
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 2);
}

static void v2_begin(build_t *b, uint8_t ver_cmd, uint8_t fam, const void *addr, size_t alen) {
    memset(b, 0, sizeof(*b));
    put(b, SIG, 12);
    put(b, &ver_cmd, 1);
    put(b, &fam, 1);
    put16(b, 0);
    put(b, addr, alen);
}

static void add_tlv(build_t *b, uint8_t type, const void *v, size_t n) {
    put(b, &type, 1);
    put16(b, n);
    put(b, v, n);
}

static void add_crc(build_t *b) {
    add_tlv(b, TP_PP_TLV_CRC32C, "\0\0\0\0", 4);
    b->crc_at = b->n - 4;
}

/* Fills in the length and the CRC32C; returns the header's length. */
static size_t v2_end(build_t *b) {
    b->b[14] = (uint8_t)((b->n - 16) >> 8);
    b->b[15] = (uint8_t)(b->n - 16);
    if (b->crc_at) {
        uint32_t c = tp__pp_crc32c(0, b->b, b->n);
        uint8_t be[4] = {(uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
        memcpy(b->b + b->crc_at, be, 4);
    }
    return b->n;
}

/* The SSL TLV value used below: client flags, verify, five sub-TLVs and an unknown one. */
static size_t ssl_value(uint8_t *out) {
    build_t s = {0};
    put(&s, "\x07", 1);
    put(&s, "\0\0\0\0", 4);
    add_tlv(&s, TP_PP_SSL_VERSION, "TLSv1.3", 7);
    add_tlv(&s, TP_PP_SSL_CN, "client.example", 14);
    add_tlv(&s, TP_PP_SSL_CIPHER, "TLS_AES_128_GCM_SHA256", 22);
    add_tlv(&s, TP_PP_SSL_SIG_ALG, "RSA-SHA256", 10);
    add_tlv(&s, TP_PP_SSL_KEY_ALG, "RSA2048", 7);
    add_tlv(&s, 0x26, "x", 1);
    memcpy(out, s.b, s.n);
    return s.n;
}

static void test_crc32c(void **state) {
    /* The check value of CRC-32C (RFC 3720 B.4, "123456789"), whole and in two pieces. */
    const uint8_t *d = (const uint8_t *)"123456789";
    assert_int_equal(tp__pp_crc32c(0, d, 9), 0xE3069283u);
    assert_int_equal(tp__pp_crc32c(tp__pp_crc32c(0, d, 4), d + 4, 5), 0xE3069283u);
    assert_int_equal(tp__pp_crc32c(0, d, 0), 0);
}

static void test_v1_tcp4(void **state) {
    static const char line[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    static const char with_payload[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
                                       "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
    tp_proxy_header_t h;
    const char *reason = "unset";
    assert_int_equal(parse(LIT(line), &h, &reason), sizeof(line) - 1);
    assert_null(reason);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.command, TP_PP_CMD_PROXY);
    assert_int_equal(h.family, TP_PP_FAMILY_INET);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_STREAM);
    expect_addr(&h.src, "192.168.0.1:56324");
    expect_addr(&h.dst, "192.168.0.11:443");
    assert_int_equal(h.ntlvs, 0);
    assert_null(tp_proxy_header_tlv(&h, TP_PP_TLV_ALPN).ptr);
    /* The payload after the line is not the parser's business. */
    assert_int_equal(parse(LIT(with_payload), &h, &reason), sizeof(line) - 1);

    static const char edges[] = "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
    assert_int_equal(parse(LIT(edges), &h, &reason), sizeof(edges) - 1);
    expect_addr(&h.src, "0.0.0.0:0");
    expect_addr(&h.dst, "255.255.255.255:65535");
}

static void test_v1_tcp6(void **state) {
    static const char line[] = "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 65535\r\nxyz";
    tp_proxy_header_t h;
    const char *reason;
    assert_int_equal(parse(LIT(line), &h, &reason), sizeof(line) - 4);
    assert_int_equal(h.family, TP_PP_FAMILY_INET6);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_STREAM);
    expect_addr(&h.src, "[2001:db8::1]:1");
    expect_addr(&h.dst, "[::ffff:192.0.2.1]:65535");

    static const char full[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                               "FFFF:0:0:0:0:0:0:1 65535 80\r\n";
    assert_int_equal(parse(LIT(full), &h, &reason), sizeof(full) - 1);
    expect_addr(&h.src, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    expect_addr(&h.dst, "[ffff::1]:80");
}

static void test_v1_unknown(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    static const char shortest[] = "PROXY UNKNOWN\r\n";
    assert_int_equal(parse(LIT(shortest), &h, &reason), 15);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.command, TP_PP_CMD_PROXY);
    assert_int_equal(h.family, TP_PP_FAMILY_UNSPEC);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_UNSPEC);
    assert_int_equal(h.src.u.sa.sa_family, AF_UNSPEC);

    /* The spec's worst case is exactly 107 bytes; whatever UNKNOWN carries is ignored. */
    assert_int_equal(strlen(unknown_107), TP_PP_V1_MAX_LEN);
    assert_int_equal(parse((const uint8_t *)unknown_107, strlen(unknown_107), &h, &reason),
                     TP_PP_V1_MAX_LEN);
    assert_int_equal(h.family, TP_PP_FAMILY_UNSPEC);
    static const char junk[] = "PROXY UNKNOWN what\tever \x01 goes\r\n";
    assert_int_equal(parse(LIT(junk), &h, &reason), sizeof(junk) - 1);

    /* One byte more and the CRLF is not in the first 107. */
    static const char too_long[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n";
    assert_int_equal(parse(LIT(too_long), &h, &reason), TP_ERR_TOO_LARGE);
    assert_string_equal(reason, "v1 line longer than 107 bytes");
}

static void test_v2_local(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    v2_begin(&b, 0x20, 0x00, NULL, 0);
    size_t n = v2_end(&b);
    assert_int_equal(n, 16);
    assert_int_equal(parse(b.b, n, &h, &reason), 16);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.command, TP_PP_CMD_LOCAL);
    assert_int_equal(h.family, TP_PP_FAMILY_UNSPEC);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_UNSPEC);
    assert_int_equal(h.ntlvs, 0);

    /* A LOCAL header's addresses are still parsed (the caller keeps the real ones). */
    v2_begin(&b, 0x20, 0x11, ADDR4, 12);
    add_tlv(&b, TP_PP_TLV_UNIQUE_ID, "hc-1", 4);
    n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    assert_int_equal(h.command, TP_PP_CMD_LOCAL);
    assert_int_equal(h.family, TP_PP_FAMILY_INET);
    expect_addr(&h.src, "192.0.2.1:51234");
    expect_str(h.unique_id, "hc-1");
}

static void test_v2_inet_tlvs(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    uint8_t uid[128];
    for (size_t i = 0; i < sizeof(uid); i++)
        uid[i] = (uint8_t)i;
    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    add_crc(&b);
    add_tlv(&b, TP_PP_TLV_ALPN, "h2", 2);
    add_tlv(&b, TP_PP_TLV_NOOP, "\0\0\0", 3);
    add_tlv(&b, TP_PP_TLV_AUTHORITY, "example.com", 11);
    add_tlv(&b, TP_PP_TLV_UNIQUE_ID, uid, sizeof(uid));
    add_tlv(&b, TP_PP_TLV_NETNS, "blue", 4);
    add_tlv(&b, 0xE0, "custom\0bytes", 12);
    add_tlv(&b, 0xE0, "second", 6);
    add_tlv(&b, TP_PP_TLV_ALPN, "http/1.1", 8); /* a second ALPN: the first one wins */
    add_tlv(&b, TP_PP_TLV_NOOP, NULL, 0);
    size_t n = v2_end(&b);
    put(&b, "\x16\x03\x01payload", 10);

    assert_int_equal(parse(b.b, b.n, &h, &reason), (int)n);
    assert_null(reason);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.command, TP_PP_CMD_PROXY);
    assert_int_equal(h.family, TP_PP_FAMILY_INET);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_STREAM);
    expect_addr(&h.src, "192.0.2.1:51234");
    expect_addr(&h.dst, "198.51.100.2:443");
    assert_true(h.crc32c_present);
    assert_true(h.crc32c_verified);
    expect_str(h.alpn, "h2");
    expect_str(h.authority, "example.com");
    expect_mem(h.unique_id, uid, sizeof(uid));
    expect_str(h.netns, "blue");
    assert_false(h.ssl.present);
    assert_null(h.ssl.cn.ptr);
    /* Raw TLVs in wire order without the NOOPs: CRC, ALPN, AUTHORITY, UNIQUE_ID, NETNS, E0, E0,
     * ALPN. */
    assert_int_equal(h.ntlvs, 8);
    assert_ptr_equal(h.tlvs, tlv_store);
    assert_int_equal(h.tlvs[0].type, TP_PP_TLV_CRC32C);
    assert_int_equal(h.tlvs[7].type, TP_PP_TLV_ALPN);
    expect_str(h.tlvs[7].value, "http/1.1");
    expect_mem(tp_proxy_header_tlv(&h, 0xE0), "custom\0bytes", 12);
    expect_str(tp_proxy_header_tlv(&h, TP_PP_TLV_ALPN), "h2");
    assert_null(tp_proxy_header_tlv(&h, TP_PP_TLV_NOOP).ptr);
    assert_null(tp_proxy_header_tlv(&h, 0xE1).ptr);
    assert_null(tp_proxy_header_tlv(NULL, 0xE0).ptr);
    /* Views point into the buffer. */
    assert_true((const uint8_t *)h.alpn.ptr > b.b && (const uint8_t *)h.alpn.ptr < b.b + n);

    /* Without TLV storage the raw array stays empty but the decoded fields are there. */
    assert_int_equal(tp__pp_parse(b.b, b.n, TP_PP_V2, 0, &h, NULL, 0, &reason), (int)n);
    assert_int_equal(h.ntlvs, 0);
    assert_null(h.tlvs);
    expect_str(h.authority, "example.com");
    /* With too little storage the header is refused rather than cut short. */
    assert_int_equal(tp__pp_parse(b.b, b.n, TP_PP_V2, 0, &h, tlv_store, 7, &reason),
                     TP_ERR_TOO_LARGE);
    assert_string_equal(reason, "more TLVs than the caller's tlv_cap");
    assert_int_equal(tp__pp_parse(b.b, b.n, TP_PP_V2, 0, &h, tlv_store, 8, &reason), (int)n);
}

static void test_v2_inet6_ssl(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    uint8_t addr[36] = {0x20, 0x01, 0x0d,     0xb8,        [15] = 1, [16] = 0x20, 0x01,
                        0x0d, 0xb8, [31] = 2, [32] = 0x30, 0x39,     [34] = 0x20, 0xfb};
    uint8_t ssl[128];
    size_t sn = ssl_value(ssl);
    v2_begin(&b, 0x21, 0x21, addr, sizeof(addr));
    add_tlv(&b, TP_PP_TLV_SSL, ssl, sn);
    add_crc(&b);
    size_t n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    assert_int_equal(h.family, TP_PP_FAMILY_INET6);
    expect_addr(&h.src, "[2001:db8::1]:12345");
    expect_addr(&h.dst, "[2001:db8::2]:8443");
    assert_true(h.crc32c_verified);
    assert_true(h.ssl.present);
    assert_int_equal(h.ssl.client, TP_PP_SSL_CLIENT_SSL | TP_PP_SSL_CLIENT_CERT_CONN |
                                       TP_PP_SSL_CLIENT_CERT_SESS);
    assert_int_equal(h.ssl.verify, 0);
    expect_str(h.ssl.version, "TLSv1.3");
    expect_str(h.ssl.cn, "client.example");
    expect_str(h.ssl.cipher, "TLS_AES_128_GCM_SHA256");
    expect_str(h.ssl.sig_alg, "RSA-SHA256");
    expect_str(h.ssl.key_alg, "RSA2048");
    expect_mem(tp_proxy_header_tlv(&h, TP_PP_TLV_SSL), ssl, sn);

    /* A failed verification is a non-zero verify field. */
    ssl[4] = 0x13;
    v2_begin(&b, 0x21, 0x22, addr, sizeof(addr));
    add_tlv(&b, TP_PP_TLV_SSL, ssl, sn);
    n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_DGRAM);
    assert_int_equal(h.ssl.verify, 0x13);
}

static void test_v2_unix(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    uint8_t addr[216] = {0};
    memcpy(addr, "/run/lb.sock", 12);
    memcpy(addr + 12 + 1, "junk after the NUL", 18);
    memcpy(addr + 108, "\0abstract", 9);
    v2_begin(&b, 0x21, 0x31, addr, sizeof(addr));
    add_tlv(&b, 0xEF, "z", 1);
    size_t n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    assert_int_equal(h.family, TP_PP_FAMILY_UNIX);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_STREAM);
    expect_str(h.src_path, "/run/lb.sock");
    expect_mem(h.dst_path, "\0abstract", 9);
    assert_int_equal(h.src.u.sa.sa_family, AF_UNSPEC);
    expect_str(tp_proxy_header_tlv(&h, 0xEF), "z");

    /* A full 108-byte path has no NUL; an all-zero one is empty. */
    memset(addr, 'a', 108);
    memset(addr + 108, 0, 108);
    v2_begin(&b, 0x21, 0x32, addr, sizeof(addr));
    n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    assert_int_equal(h.transport, TP_PP_TRANSPORT_DGRAM);
    assert_int_equal(h.src_path.len, 108);
    assert_int_equal(h.dst_path.len, 0);
}

/* Every prefix of a valid header is "need more", the whole is its length, payload is left. */
static void check_split(const uint8_t *hdr, size_t n) {
    uint8_t buf[1024];
    assert_true(n + 8 <= sizeof(buf));
    memcpy(buf, hdr, n);
    memcpy(buf + n, "\r\nGET /\n", 8);
    tp_proxy_header_t h;
    for (size_t k = 0; k < n; k++) {
        const char *reason = NULL;
        int rc = parse(buf, k, &h, &reason);
        if (rc != 0)
            fail_msg("prefix %zu of %zu: %d (%s)", k, n, rc, reason ? reason : "-");
    }
    const char *reason;
    assert_int_equal(parse(buf, n, &h, &reason), (int)n);
    for (size_t extra = 1; extra <= 8; extra++)
        assert_int_equal(parse(buf, n + extra, &h, &reason), (int)n);
}

static void test_split_points(void **state) {
    static const char *const v1[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n",
        "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 65535\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
        unknown_107,
    };
    for (size_t i = 0; i < sizeof(v1) / sizeof(v1[0]); i++)
        check_split((const uint8_t *)v1[i], strlen(v1[i]));

    build_t b;
    v2_begin(&b, 0x20, 0x00, NULL, 0);
    check_split(b.b, v2_end(&b));

    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    add_crc(&b);
    add_tlv(&b, TP_PP_TLV_ALPN, "h2", 2);
    add_tlv(&b, TP_PP_TLV_NOOP, NULL, 0);
    add_tlv(&b, 0xE0, "custom", 6);
    check_split(b.b, v2_end(&b));

    uint8_t ssl[128];
    size_t sn = ssl_value(ssl);
    uint8_t addr6[36] = {[15] = 1, [31] = 1};
    v2_begin(&b, 0x21, 0x21, addr6, sizeof(addr6));
    add_tlv(&b, TP_PP_TLV_SSL, ssl, sn);
    add_crc(&b);
    check_split(b.b, v2_end(&b));

    uint8_t unix_addr[216] = {'/', 'a', [108] = '/', 'b'};
    v2_begin(&b, 0x21, 0x31, unix_addr, sizeof(unix_addr));
    add_tlv(&b, TP_PP_TLV_NETNS, "ns", 2);
    check_split(b.b, v2_end(&b));
}

typedef struct bad_case {
    const char *bytes;
    size_t len;
    unsigned accept;
    int err;
    const char *reason;
} bad_case_t;

#define BAD(s, why)                                                                                \
    { s, sizeof(s) - 1, BOTH, TP_ERR_PROTOCOL, why }
#define BAD_X(s, acc, code, why)                                                                   \
    { s, sizeof(s) - 1, acc, code, why }
#define X10 "xxxxxxxxxx"

static void test_malformed(void **state) {
    static const bad_case_t cases[] = {
        /* Not a PROXY header at all: refused at the first byte. */
        BAD("GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
        BAD("G", "not a PROXY protocol header"),
        BAD("\x16\x03\x01", "not a PROXY protocol header"),
        /* v1 */
        BAD("PROXZ", "bad v1 signature"),
        BAD("POST / HTTP/1.1\r\n", "bad v1 signature"),
        BAD("PROXYTCP4", "v1 needs a single space after PROXY"),
        BAD("PROXY  TCP4", "v1 fields must be separated by single spaces"),
        BAD("PROXY TCP5", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        BAD("PROXY tcp4 1.2.3.4", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        BAD("PROXY UNKN 1.2.3.4 5.6.7.8 1 2\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        BAD("PROXY UNKNOWNX\r\n", "v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        BAD("PROXY TCP4\r\n", "v1 line has too few fields"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n", "v1 line has too few fields"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 \r\n", "v1 line has too few fields"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 80 90\r\n", "v1 line has too many fields"),
        BAD("PROXY TCP4 1.2.3.4  5.6.7.8 80 80\r\n",
            "v1 fields must be separated by single spaces"),
        BAD("PROXY TCP4 1.2.3.256 5.6.7.8 80 80\r\n", "v1 bad source IPv4 address"),
        BAD("PROXY TCP4 1.2.3 5.6.7.8 80 80\r\n", "v1 bad source IPv4 address"),
        BAD("PROXY TCP4 ::1 ::1 80 80\r\n", "v1 bad source IPv4 address"),
        BAD("PROXY TCP4 1.2.3.4 5.6.07.8 80 80\r\n", "v1 bad destination IPv4 address"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8.9 80 80\r\n", "v1 bad destination IPv4 address"),
        BAD("PROXY TCP6 1.2.3.4 ::1 80 80\r\n", "v1 bad source IPv6 address"),
        BAD("PROXY TCP6 ::1 ::g 80 80\r\n", "v1 bad destination IPv6 address"),
        BAD("PROXY TCP6 ::1 1::2::3 80 80\r\n", "v1 bad destination IPv6 address"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", "v1 port out of range"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 999999", "v1 port out of range"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", "v1 port has a leading zero"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 00", "v1 port has a leading zero"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n", "v1 port is not a decimal number"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 0x50\r\n", "v1 port is not a decimal number"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 80\n", "v1 needs CRLF"),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 80 80\r\r\n", "v1 needs CRLF"),
        BAD("PROXY UNKNOWN\n", "v1 needs CRLF"),
        BAD("PROXY UNKNOWN stuff\nmore\r\n", "v1 needs CRLF"),
        BAD_X("PROXY UNKNOWN " X10 X10 X10 X10 X10 X10 X10 X10 X10 X10, BOTH, TP_ERR_TOO_LARGE,
              "v1 line longer than 107 bytes"),
        BAD_X("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", TP_PP_V2, TP_ERR_PROTOCOL,
              "PROXY v1 header where only v2 is accepted"),
        /* v2: the fixed part */
        BAD("\r\n\r\n\0\r\nQUIX\n", "bad v2 signature"),
        BAD("\r\n\rX", "bad v2 signature"),
        BAD(SIG "\x11\x11\x00\x0c" ADDR4, "unsupported v2 version 0x1"),
        BAD(SIG "\x31", "unsupported v2 version 0x3"),
        BAD(SIG "\x22", "unknown v2 command 0x2"),
        BAD(SIG "\x2f", "unknown v2 command 0xf"),
        BAD(SIG "\x21\x41", "unknown v2 address family 0x4"),
        BAD(SIG "\x21\x13", "unknown v2 transport 0x3"),
        BAD(SIG "\x21\x10\x00\x0c" ADDR4, "v2 family and transport must be both unspecified"),
        BAD(SIG "\x20\x01", "v2 family and transport must be both unspecified"),
        BAD(SIG "\x21\x11\x00\x03xyz", "v2 length 3 too short for AF_INET"),
        BAD(SIG "\x21\x11\x00\x00", "v2 length 0 too short for AF_INET"),
        BAD(SIG "\x21\x21\x00\x14", "v2 length 20 too short for AF_INET6"),
        BAD(SIG "\x21\x31\x00\xd7", "v2 length 215 too short for AF_UNIX"),
        BAD_X(SIG "\x21\x11\xff\xff", BOTH, TP_ERR_TOO_LARGE,
              "v2 header longer than the configured limit"),
        BAD_X(SIG "\x21\x11", TP_PP_V1, TP_ERR_PROTOCOL,
              "PROXY v2 header where only v1 is accepted"),
        /* v2: TLVs (after ADDR4: type, 16-bit length, value) */
        BAD(SIG "\x21\x11\x00\x11" ADDR4 "\x20\x00\x0axy", "TLV 0x20 overruns the header"),
        BAD(SIG "\x21\x11\x00\x0e" ADDR4 "\xe0\x00", "TLV 0xe0 overruns the header"),
        BAD(SIG "\x21\x00\x00\x01\x05", "TLV 0x05 overruns the header"),
        BAD(SIG "\x21\x11\x00\x12" ADDR4 "\x03\x00\x03\0\0\0", "CRC32C TLV is not 4 bytes long"),
        BAD(SIG "\x21\x11\x00\x13" ADDR4 "\x03\x00\x04\xde\xad\xbe\xef", "CRC32C mismatch"),
        BAD(SIG "\x21\x11\x00\x1a" ADDR4 "\x03\x00\x04\0\0\0\0\x03\x00\x04\0\0\0\0",
            "more than one CRC32C TLV"),
        BAD(SIG "\x21\x11\x00\x10" ADDR4 "\x20\x00\x01\x01", "SSL TLV shorter than 5 bytes"),
        BAD(SIG "\x21\x11\x00\x17" ADDR4 "\x20\x00\x08\x01\0\0\0\0\x21\x00\x05",
            "SSL sub-TLV overruns the SSL TLV"),
        BAD(SIG "\x21\x11\x00\x16" ADDR4 "\x20\x00\x07\x01\0\0\0\0\x21\x00",
            "SSL sub-TLV overruns the SSL TLV"),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bad_case_t *c = &cases[i];
        tp_proxy_header_t h;
        const char *reason = NULL;
        int rc = tp__pp_parse((const uint8_t *)c->bytes, c->len, c->accept, 0, &h, tlv_store, NTLV,
                              &reason);
        if (rc != c->err || !reason || !strstr(reason, c->reason))
            fail_msg("case %zu: rc %d reason \"%s\", wanted %d \"%s\"", i, rc,
                     reason ? reason : "(null)", c->err, c->reason);
        /* Without a place for the reason the verdict is the same. */
        assert_int_equal(tp__pp_parse((const uint8_t *)c->bytes, c->len, c->accept, 0, &h,
                                      tlv_store, NTLV, NULL),
                         rc);
    }
    assert_true(sizeof(cases) / sizeof(cases[0]) >= 25);
}

static void test_malformed_built(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    uint8_t uid[129] = {0};
    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    add_tlv(&b, TP_PP_TLV_UNIQUE_ID, uid, sizeof(uid));
    size_t n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), TP_ERR_PROTOCOL);
    assert_string_equal(reason, "UNIQUE_ID TLV longer than 128 bytes");

    /* A header that is valid except for one flipped bit after the CRC was computed. */
    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    add_crc(&b);
    add_tlv(&b, TP_PP_TLV_AUTHORITY, "example.com", 11);
    n = v2_end(&b);
    assert_int_equal(parse(b.b, n, &h, &reason), (int)n);
    b.b[n - 1] ^= 0x20;
    assert_int_equal(parse(b.b, n, &h, &reason), TP_ERR_PROTOCOL);
    assert_string_equal(reason, "CRC32C mismatch");
    b.b[n - 1] ^= 0x20;
    b.b[16] ^= 1; /* the source address */
    assert_int_equal(parse(b.b, n, &h, &reason), TP_ERR_PROTOCOL);
    assert_string_equal(reason, "CRC32C mismatch");

    /* The overrun is known from the TLV's own header, before its bytes arrive. */
    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    add_tlv(&b, TP_PP_TLV_ALPN, "h2", 2);
    n = v2_end(&b);
    b.b[n - 3] = 0x7f; /* the ALPN length's low byte */
    assert_int_equal(parse(b.b, n - 2, &h, &reason), TP_ERR_PROTOCOL);
    assert_string_equal(reason, "TLV 0x01 overruns the header");
}

static void test_limits_and_args(void **state) {
    tp_proxy_header_t h;
    const char *reason;
    build_t b;
    v2_begin(&b, 0x21, 0x11, ADDR4, 12);
    uint8_t big[200] = {0};
    add_tlv(&b, 0xE0, big, sizeof(big));
    size_t n = v2_end(&b); /* 231 bytes */
    assert_int_equal(tp__pp_parse(b.b, n, BOTH, n, &h, NULL, 0, &reason), (int)n);
    /* Over the caller's limit: refused as soon as the length is in. */
    assert_int_equal(tp__pp_parse(b.b, 16, BOTH, n - 1, &h, NULL, 0, &reason), TP_ERR_TOO_LARGE);
    assert_string_equal(reason, "v2 header longer than the configured limit");
    /* A limit above the format's own is lowered to it. */
    assert_int_equal(tp__pp_parse(b.b, n, BOTH, (size_t)1 << 40, &h, NULL, 0, &reason), (int)n);
    /* The default limit is 4096. */
    static const char just_over[] = SIG "\x21\x00\x0f\xf1";
    assert_int_equal(parse(LIT(just_over), &h, &reason), TP_ERR_TOO_LARGE);
    static const char at_limit[] = SIG "\x21\x00\x0f\xf0";
    assert_int_equal(parse(LIT(at_limit), &h, &reason), 0);

    assert_int_equal(parse(NULL, 0, &h, &reason), 0);
    assert_int_equal(tp__pp_parse(b.b, n, 0, 0, &h, NULL, 0, &reason), TP_ERR_INVAL);
    assert_int_equal(tp__pp_parse(b.b, n, BOTH, 0, NULL, NULL, 0, &reason), TP_ERR_INVAL);
    assert_int_equal(tp__pp_parse(b.b, n, BOTH, 0, &h, NULL, 4, &reason), TP_ERR_INVAL);
    assert_int_equal(tp__pp_parse(NULL, 3, BOTH, 0, &h, NULL, 0, &reason), TP_ERR_INVAL);

    /* Only the accepted versions. */
    static const char v1[] = "PROXY UNKNOWN\r\n";
    assert_int_equal(tp__pp_parse(LIT(v1), TP_PP_V1, 0, &h, NULL, 0, &reason), 15);
    assert_int_equal(tp__pp_parse(LIT(v1), TP_PP_V2, 0, &h, NULL, 0, &reason), TP_ERR_PROTOCOL);
    assert_int_equal(tp__pp_parse(b.b, n, TP_PP_V2, 0, &h, NULL, 0, &reason), (int)n);
    assert_int_equal(tp__pp_parse(b.b, 1, TP_PP_V1, 0, &h, NULL, 0, &reason), TP_ERR_PROTOCOL);
}

/* Parses what an encoder wrote and checks the addresses came back. */
static void parse_back(const void *buf, int n, const char *src, const char *dst,
                       tp_proxy_header_t *h) {
    assert_true(n > 0);
    const char *reason = NULL;
    assert_int_equal(
        tp__pp_parse(buf, (size_t)n, BOTH, TP_PP_V2_MAX_LEN, h, tlv_store, NTLV, &reason), n);
    if (src) {
        assert_int_equal(h->command, TP_PP_CMD_PROXY);
        assert_int_equal(h->transport, TP_PP_TRANSPORT_STREAM);
        expect_addr(&h->src, src);
        expect_addr(&h->dst, dst);
    }
}

static void test_encode_v1(void **state) {
    static const char *const pairs[][2] = {
        {"192.0.2.1:51234", "198.51.100.2:443"},
        {"0.0.0.0:0", "255.255.255.255:65535"},
        {"[2001:db8::1]:1", "[2001:db8::2]:8443"},
        {"[::ffff:192.0.2.1]:80", "[::]:0"},
        {"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65534"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        tp_addr_t s, d;
        assert_int_equal(tp_addr_parse(&s, pairs[i][0], false), 0);
        assert_int_equal(tp_addr_parse(&d, pairs[i][1], false), 0);
        char line[TP_PP_V1_MAX_LEN + 1];
        int n = tp__pp_encode_v1(line, sizeof(line), &s, &d);
        tp_proxy_header_t h;
        parse_back(line, n, pairs[i][0], pairs[i][1], &h);
        assert_int_equal(h.version, 1);
        assert_int_equal(strlen(line), (size_t)n);
        assert_int_equal(tp__pp_encode_v1(line, (size_t)n, &s, &d), n); /* no room for the NUL */
        assert_int_equal(tp__pp_encode_v1(line, (size_t)n - 1, &s, &d), TP_ERR_TOO_LARGE);
    }
    char line[TP_PP_V1_MAX_LEN + 1];
    assert_int_equal(tp__pp_encode_v1(line, sizeof(line), NULL, NULL), 15);
    assert_string_equal(line, "PROXY UNKNOWN\r\n");
    static const char want[] = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n";
    tp_addr_t s, d, s6;
    assert_int_equal(tp_addr_parse(&s, "192.0.2.1:51234", false), 0);
    assert_int_equal(tp_addr_parse(&d, "198.51.100.2:443", false), 0);
    assert_int_equal(tp_addr_parse(&s6, "[::1]:1", false), 0);
    assert_int_equal(tp__pp_encode_v1(line, sizeof(line), &s, &d), sizeof(want) - 1);
    assert_string_equal(line, want);
    assert_int_equal(tp__pp_encode_v1(line, sizeof(line), &s6, &d), TP_ERR_INVAL);
    assert_int_equal(tp__pp_encode_v1(line, sizeof(line), &s, NULL), TP_ERR_INVAL);
}

static void test_encode_v2(void **state) {
    tp_addr_t s, d, s6, d6;
    assert_int_equal(tp_addr_parse(&s, "192.0.2.1:51234", false), 0);
    assert_int_equal(tp_addr_parse(&d, "198.51.100.2:443", false), 0);
    assert_int_equal(tp_addr_parse(&s6, "[2001:db8::1]:1", false), 0);
    assert_int_equal(tp_addr_parse(&d6, "[2001:db8::2]:65535", false), 0);
    uint8_t ssl[128];
    size_t sn = ssl_value(ssl);
    const tp_pp_tlv_t tlvs[] = {
        {TP_PP_TLV_ALPN, {"h2", 2}},
        {TP_PP_TLV_AUTHORITY, {"example.com", 11}},
        {TP_PP_TLV_UNIQUE_ID, {"id-42", 5}},
        {TP_PP_TLV_NETNS, {"blue", 4}},
        {TP_PP_TLV_SSL, {(const char *)ssl, sn}},
        {0xE0, {"", 0}},
        {0xE7, {"\0\1\2", 3}},
    };
    const size_t nt = sizeof(tlvs) / sizeof(tlvs[0]);
    uint8_t out[1024];
    tp_proxy_header_t h;

    for (int crc = 0; crc <= 1; crc++) {
        int n = tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d, tlvs, nt, crc);
        parse_back(out, n, "192.0.2.1:51234", "198.51.100.2:443", &h);
        assert_int_equal(h.version, 2);
        assert_int_equal(h.family, TP_PP_FAMILY_INET);
        assert_int_equal(h.crc32c_present, crc);
        assert_int_equal(h.crc32c_verified, crc);
        assert_int_equal(h.ntlvs, nt + (size_t)crc);
        for (size_t i = 0; i < nt; i++) {
            assert_int_equal(h.tlvs[i + (size_t)crc].type, tlvs[i].type);
            expect_mem(h.tlvs[i + (size_t)crc].value, tlvs[i].value.ptr, tlvs[i].value.len);
        }
        expect_str(h.alpn, "h2");
        expect_str(h.authority, "example.com");
        expect_str(h.unique_id, "id-42");
        expect_str(h.netns, "blue");
        expect_str(h.ssl.cn, "client.example");
        assert_int_equal(tp_proxy_header_tlv(&h, 0xE0).len, 0);
        assert_non_null(tp_proxy_header_tlv(&h, 0xE0).ptr);
        /* Exactly the header's length is enough room; one byte less is not. */
        assert_int_equal(tp__pp_encode_v2(out, (size_t)n, TP_PP_CMD_PROXY, &s, &d, tlvs, nt, crc),
                         n);
        assert_int_equal(
            tp__pp_encode_v2(out, (size_t)n - 1, TP_PP_CMD_PROXY, &s, &d, tlvs, nt, crc),
            TP_ERR_TOO_LARGE);
    }

    int n = tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s6, &d6, NULL, 0, true);
    assert_int_equal(n, 16 + 36 + 7);
    parse_back(out, n, "[2001:db8::1]:1", "[2001:db8::2]:65535", &h);
    assert_int_equal(h.family, TP_PP_FAMILY_INET6);
    assert_true(h.crc32c_verified);

    n = tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_LOCAL, NULL, NULL, NULL, 0, false);
    assert_int_equal(n, 16);
    parse_back(out, n, NULL, NULL, &h);
    assert_int_equal(h.command, TP_PP_CMD_LOCAL);
    assert_int_equal(h.family, TP_PP_FAMILY_UNSPEC);

    n = tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_LOCAL, &s, &d, NULL, 0, true);
    parse_back(out, n, NULL, NULL, &h);
    assert_int_equal(h.command, TP_PP_CMD_LOCAL);
    expect_addr(&h.src, "192.0.2.1:51234");

    /* Errors. */
    const tp_pp_tlv_t crc_tlv = {TP_PP_TLV_CRC32C, {"\0\0\0\0", 4}};
    const tp_pp_tlv_t huge = {0xE0, {(const char *)out, 65536}};
    const tp_pp_tlv_t big[2] = {{0xE0, {(const char *)out, 65535}}, {0xE1, {"x", 1}}};
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), 2, &s, &d, NULL, 0, false), TP_ERR_INVAL);
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d6, NULL, 0, false),
                     TP_ERR_INVAL);
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, NULL, &d, NULL, 0, false),
                     TP_ERR_INVAL);
    assert_int_equal(
        tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d, &crc_tlv, 1, false),
        TP_ERR_INVAL);
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d, &huge, 1, false),
                     TP_ERR_INVAL);
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d, big, 2, false),
                     TP_ERR_TOO_LARGE);
    assert_int_equal(tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &s, &d, NULL, 1, false),
                     TP_ERR_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),          cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),         cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v2_local),        cmocka_unit_test(test_v2_inet_tlvs),
        cmocka_unit_test(test_v2_inet6_ssl),    cmocka_unit_test(test_v2_unix),
        cmocka_unit_test(test_split_points),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_built), cmocka_unit_test(test_limits_and_args),
        cmocka_unit_test(test_encode_v1),       cmocka_unit_test(test_encode_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
