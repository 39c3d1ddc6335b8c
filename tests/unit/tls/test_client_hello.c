/* test_client_hello.c: unit tests for the ClientHello parser of the SNI peek (src/tls). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tls/client_hello.h"

/* A ClientHello under construction: the body first, then wrapped in records. */
typedef struct build {
    uint8_t b[70000];
    size_t n;
} build_t;

static void put(build_t *b, const void *p, size_t n) {
    assert_true(b->n + n <= sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put8(build_t *b, unsigned v) {
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}
static void put16(build_t *b, unsigned v) {
    put8(b, v >> 8);
    put8(b, v);
}

typedef struct hello_opts {
    const char *sni;      /* NULL: no server_name */
    const char *alpn[4];  /* NULL-terminated */
    unsigned versions[4]; /* supported_versions, 0-terminated; none: no extension */
    bool twice_sni;       /* a second server_name extension */
    bool no_extensions;   /* no extensions block at all */
    size_t padding;       /* a padding extension of this many bytes */
} hello_opts_t;

/* The handshake message (type, length, body). */
static size_t make_hello(uint8_t *out, const hello_opts_t *o) {
    build_t ext = {.n = 0}, body = {.n = 0};
    if (o->sni) {
        for (int k = 0; k < (o->twice_sni ? 2 : 1); k++) {
            size_t len = strlen(o->sni);
            put16(&ext, 0);
            put16(&ext, (unsigned)len + 5);
            put16(&ext, (unsigned)len + 3);
            put8(&ext, 0);
            put16(&ext, (unsigned)len);
            put(&ext, o->sni, len);
        }
    }
    if (o->alpn[0]) {
        size_t total = 0;
        for (int i = 0; o->alpn[i]; i++)
            total += 1 + strlen(o->alpn[i]);
        put16(&ext, 16);
        put16(&ext, (unsigned)total + 2);
        put16(&ext, (unsigned)total);
        for (int i = 0; o->alpn[i]; i++) {
            put8(&ext, (unsigned)strlen(o->alpn[i]));
            put(&ext, o->alpn[i], strlen(o->alpn[i]));
        }
    }
    if (o->versions[0]) {
        unsigned n = 0;
        while (o->versions[n])
            n++;
        put16(&ext, 43);
        put16(&ext, 1 + 2 * n);
        put8(&ext, 2 * n);
        for (unsigned i = 0; i < n; i++)
            put16(&ext, o->versions[i]);
    }
    if (o->padding) {
        put16(&ext, 21);
        put16(&ext, (unsigned)o->padding);
        for (size_t i = 0; i < o->padding; i++)
            put8(&ext, 0);
    }
    put16(&body, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(&body, (unsigned)i);
    put8(&body, 0);  /* session id */
    put16(&body, 4); /* two suites */
    put16(&body, 0x1301);
    put16(&body, 0xc02f);
    put8(&body, 1); /* compression: null */
    put8(&body, 0);
    if (!o->no_extensions) {
        put16(&body, (unsigned)ext.n);
        put(&body, ext.b, ext.n);
    }
    out[0] = 1;
    out[1] = (uint8_t)(body.n >> 16);
    out[2] = (uint8_t)(body.n >> 8);
    out[3] = (uint8_t)body.n;
    memcpy(out + 4, body.b, body.n);
    return body.n + 4;
}

/* Wraps msg into records of at most `frag` bytes. */
static size_t records(uint8_t *out, const uint8_t *msg, size_t n, size_t frag) {
    size_t o = 0;
    for (size_t off = 0; off < n; off += frag) {
        size_t k = n - off < frag ? n - off : frag;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, msg + off, k);
        o += k;
    }
    return o;
}

static uint8_t msg[70000], wire[80000], scratch[TP_TLS_HELLO_MAX];

static void expect_str(tp_str_t s, const char *want) {
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void test_sni_alpn_versions(void **state) {
    hello_opts_t o = {
        .sni = "www.Example.com", .alpn = {"h2", "http/1.1"}, .versions = {0x3a3a, 0x0304, 0x0303}};
    size_t n = records(wire, msg, make_hello(msg, &o), 16384);
    tp_tls_client_hello_t h;
    const char *why;
    assert_int_equal(tp__tls_hello_parse(wire, n, NULL, 0, &h, &why), (int)n);
    expect_str(h.sni, "www.Example.com");
    assert_int_equal(h.nalpn, 2);
    expect_str(h.alpn[0], "h2");
    expect_str(h.alpn[1], "http/1.1");
    assert_int_equal(h.legacy_version, 0x0303);
    assert_int_equal(h.max_version, 0x0304); /* GREASE 0x3a3a ignored */
    assert_int_equal(h.ncipher_suites, 2);
    /* Views point into the input. */
    assert_true((const uint8_t *)h.sni.ptr > wire && (const uint8_t *)h.sni.ptr < wire + n);
}

static void test_minimal_and_old(void **state) {
    hello_opts_t o = {.no_extensions = true};
    size_t n = records(wire, msg, make_hello(msg, &o), 16384);
    tp_tls_client_hello_t h;
    const char *why;
    assert_int_equal(tp__tls_hello_parse(wire, n, NULL, 0, &h, &why), (int)n);
    assert_null(h.sni.ptr);
    assert_int_equal(h.nalpn, 0);
    assert_int_equal(h.max_version, 0x0303); /* no supported_versions: legacy_version */
}

static void test_needs_more(void **state) {
    hello_opts_t o = {.sni = "a.example", .versions = {0x0304}};
    size_t n = records(wire, msg, make_hello(msg, &o), 16384);
    tp_tls_client_hello_t h;
    const char *why;
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(tp__tls_hello_parse(wire, cut, NULL, 0, &h, &why), 0);
}

static void test_split_records(void **state) {
    hello_opts_t o = {.sni = "split.example", .alpn = {"http/1.1"}, .versions = {0x0304}};
    size_t m = make_hello(msg, &o);
    size_t n = records(wire, msg, m, 7); /* the handshake header itself is split, too */
    tp_tls_client_hello_t h;
    const char *why;
    assert_int_equal(tp__tls_hello_parse(wire, n, NULL, 0, &h, &why), TP_ERR_TOO_LARGE);
    assert_int_equal(tp__tls_hello_parse(wire, n, scratch, sizeof(scratch), &h, &why), (int)n);
    expect_str(h.sni, "split.example");
    assert_true((const uint8_t *)h.sni.ptr >= scratch &&
                (const uint8_t *)h.sni.ptr < scratch + sizeof(scratch));
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(tp__tls_hello_parse(wire, cut, scratch, sizeof(scratch), &h, &why), 0);
    /* Trailing bytes after the records (early data, say) are not the parser's. */
    wire[n] = 23;
    assert_int_equal(tp__tls_hello_parse(wire, n + 1, scratch, sizeof(scratch), &h, &why), (int)n);
}

static void test_refused_early(void **state) {
    tp_tls_client_hello_t h;
    const char *why;
    assert_int_equal(tp__tls_hello_parse((const uint8_t *)"G", 1, NULL, 0, &h, &why),
                     TP_ERR_PROTOCOL);
    assert_string_equal(why, "not a TLS handshake record");
    const uint8_t v2[] = {0x80, 0x2e};
    assert_int_equal(tp__tls_hello_parse(v2, 2, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    assert_string_equal(why, "an SSLv2 ClientHello (SSL 2 is refused)");
    const uint8_t badver[] = {22, 4};
    assert_int_equal(tp__tls_hello_parse(badver, 2, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    const uint8_t zero[] = {22, 3, 1, 0, 0};
    assert_int_equal(tp__tls_hello_parse(zero, 5, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    const uint8_t server_hello[] = {22, 3, 3, 0, 40, 2};
    assert_int_equal(tp__tls_hello_parse(server_hello, 6, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    assert_string_equal(why, "the first handshake message is not a ClientHello");
    const uint8_t huge[] = {22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x01};
    assert_int_equal(tp__tls_hello_parse(huge, sizeof(huge), NULL, 0, &h, &why), TP_ERR_TOO_LARGE);
    assert_string_equal(why, "ClientHello larger than 64 KiB");
}

static void test_malformed(void **state) {
    tp_tls_client_hello_t h;
    const char *why;
    hello_opts_t twice = {.sni = "a.example", .twice_sni = true};
    size_t n = records(wire, msg, make_hello(msg, &twice), 16384);
    assert_int_equal(tp__tls_hello_parse(wire, n, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    assert_string_equal(why, "an extension appears twice in the ClientHello");
    assert_null(h.sni.ptr);

    hello_opts_t ctl = {.sni = "a\x01.example"};
    n = records(wire, msg, make_hello(msg, &ctl), 16384);
    assert_int_equal(tp__tls_hello_parse(wire, n, NULL, 0, &h, &why), TP_ERR_PROTOCOL);
    assert_string_equal(why, "server_name host name holds a byte a DNS name cannot");

    hello_opts_t ok = {.sni = "a.example", .alpn = {"h2"}};
    size_t m = make_hello(msg, &ok);
    /* Every shortened body length is refused, never read past; only the cut right after the
     * compression methods (43 bytes) is a valid hello without extensions. */
    for (size_t cut = 38; cut < m - 4; cut++) {
        uint8_t copy[512];
        memcpy(copy, msg, m);
        copy[1] = (uint8_t)(cut >> 16);
        copy[2] = (uint8_t)(cut >> 8);
        copy[3] = (uint8_t)cut;
        n = records(wire, copy, cut + 4, 16384);
        int rc = tp__tls_hello_parse(wire, n, NULL, 0, &h, &why);
        assert_int_equal(rc, cut == 43 ? (int)n : TP_ERR_PROTOCOL);
    }
}

static void test_many_alpn_and_big(void **state) {
    hello_opts_t o = {.sni = "big.example", .alpn = {"a", "b", "c"}, .padding = 20000};
    size_t m = make_hello(msg, &o);
    size_t n = records(wire, msg, m, 16384);
    tp_tls_client_hello_t h;
    const char *why;
    assert_int_equal(tp__tls_hello_parse(wire, n, scratch, sizeof(scratch), &h, &why), (int)n);
    expect_str(h.sni, "big.example");
    assert_int_equal(h.nalpn, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_alpn_versions), cmocka_unit_test(test_minimal_and_old),
        cmocka_unit_test(test_needs_more),        cmocka_unit_test(test_split_records),
        cmocka_unit_test(test_refused_early),     cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_many_alpn_and_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
