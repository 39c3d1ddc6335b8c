/* fuzz_proxyproto.c: libFuzzer target for the PROXY protocol v1/v2 parser and encoders. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxyproto/parse.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

enum { NTLV = 64 };

/* A view is absent or lies inside the header's bytes; touching its ends lets ASan check it. */
static void check_view(tp_str_t s, const uint8_t *buf, size_t n) {
    if (!s.ptr) {
        CHECK(s.len == 0);
        return;
    }
    const uint8_t *p = (const uint8_t *)s.ptr;
    CHECK(p >= buf && p <= buf + n && s.len <= (size_t)(buf + n - p));
    if (s.len) {
        volatile uint8_t c = p[0] ^ p[s.len - 1];
        (void)c;
    }
}

static void check_views(const tp_proxy_header_t *h, const uint8_t *buf, size_t n) {
    check_view(h->src_path, buf, n);
    check_view(h->dst_path, buf, n);
    check_view(h->alpn, buf, n);
    check_view(h->authority, buf, n);
    check_view(h->unique_id, buf, n);
    check_view(h->netns, buf, n);
    check_view(h->ssl.version, buf, n);
    check_view(h->ssl.cn, buf, n);
    check_view(h->ssl.cipher, buf, n);
    check_view(h->ssl.sig_alg, buf, n);
    check_view(h->ssl.key_alg, buf, n);
    CHECK(h->ntlvs <= NTLV);
    for (size_t i = 0; i < h->ntlvs; i++) {
        CHECK(h->tlvs[i].type != TP_PP_TLV_NOOP);
        check_view(h->tlvs[i].value, buf, n);
    }
    CHECK(h->version == 1 || h->version == 2);
    CHECK(h->crc32c_verified == h->crc32c_present);
    CHECK(h->unique_id.len <= 128);
    if (h->version == 1)
        CHECK(n <= TP_PP_V1_MAX_LEN && h->ntlvs == 0 && h->command == TP_PP_CMD_PROXY);
}

static bool same_str(tp_str_t a, tp_str_t b) {
    if (a.len != b.len || !a.ptr != !b.ptr)
        return false;
    return a.len == 0 || (a.ptr && b.ptr && memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Re-encodes a PROXY header over TCP and checks it parses back to the same values. */
static void round_trip(const tp_proxy_header_t *h) {
    static uint8_t out[TP_PP_V2_MAX_LEN];
    static tp_pp_tlv_t tlvs[NTLV], back_tlvs[NTLV];
    tp_proxy_header_t back;
    const char *reason;

    char line[TP_PP_V1_MAX_LEN + 1];
    int n = tp__pp_encode_v1(line, sizeof(line), &h->src, &h->dst);
    CHECK(n > 0);
    CHECK(tp__pp_parse((const uint8_t *)line, (size_t)n, TP_PP_V1, 0, &back, NULL, 0, &reason) ==
          n);
    CHECK(back.family == h->family && tp_addr_eq(&back.src, &h->src) &&
          tp_addr_eq(&back.dst, &h->dst));

    size_t nt = 0;
    for (size_t i = 0; i < h->ntlvs; i++)
        if (h->tlvs[i].type != TP_PP_TLV_CRC32C)
            tlvs[nt++] = h->tlvs[i];
    n = tp__pp_encode_v2(out, sizeof(out), TP_PP_CMD_PROXY, &h->src, &h->dst, tlvs, nt,
                         h->crc32c_present);
    CHECK(n > 0);
    CHECK(tp__pp_parse(out, (size_t)n, TP_PP_V2, TP_PP_V2_MAX_LEN, &back, back_tlvs, NTLV,
                       &reason) == n);
    CHECK(back.command == TP_PP_CMD_PROXY && back.family == h->family &&
          back.transport == TP_PP_TRANSPORT_STREAM);
    CHECK(tp_addr_eq(&back.src, &h->src) && tp_addr_eq(&back.dst, &h->dst));
    CHECK(back.crc32c_verified == h->crc32c_present);
    CHECK(back.ntlvs == h->ntlvs);
    for (size_t i = 0, j = 0; i < h->ntlvs; i++) {
        if (h->tlvs[i].type == TP_PP_TLV_CRC32C)
            continue;
        while (back.tlvs[j].type == TP_PP_TLV_CRC32C)
            j++;
        CHECK(back.tlvs[j].type == h->tlvs[i].type &&
              same_str(back.tlvs[j].value, h->tlvs[i].value));
        j++;
    }
    CHECK(same_str(back.alpn, h->alpn) && same_str(back.authority, h->authority) &&
          same_str(back.unique_id, h->unique_id) && same_str(back.netns, h->netns));
    CHECK(back.ssl.present == h->ssl.present && back.ssl.client == h->ssl.client &&
          back.ssl.verify == h->ssl.verify && same_str(back.ssl.cn, h->ssl.cn) &&
          same_str(back.ssl.version, h->ssl.version) && same_str(back.ssl.cipher, h->ssl.cipher) &&
          same_str(back.ssl.sig_alg, h->ssl.sig_alg) && same_str(back.ssl.key_alg, h->ssl.key_alg));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tp_pp_tlv_t tlvs[NTLV];
    tp_proxy_header_t h;
    const char *reason;

    /* The reference: both versions, the format's own limit. */
    int ref =
        tp__pp_parse(data, size, TP_PP_V1 | TP_PP_V2, TP_PP_V2_MAX_LEN, &h, tlvs, NTLV, &reason);
    CHECK(ref <= (int)size);
    CHECK((ref < 0) == (reason != NULL));
    if (ref > 0) {
        check_views(&h, data, (size_t)ref);
        if (h.command == TP_PP_CMD_PROXY && h.transport == TP_PP_TRANSPORT_STREAM &&
            (h.family == TP_PP_FAMILY_INET || h.family == TP_PP_FAMILY_INET6))
            round_trip(&h);
        /* The header alone parses the same, and its prefixes want more. */
        tp_proxy_header_t again;
        CHECK(tp__pp_parse(data, (size_t)ref, TP_PP_V1 | TP_PP_V2, TP_PP_V2_MAX_LEN, &again, tlvs,
                           NTLV, &reason) == ref);
        const size_t cuts[] = {0, 1, (size_t)ref / 2, (size_t)ref - 1};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
            CHECK(tp__pp_parse(data, cuts[i], TP_PP_V1 | TP_PP_V2, TP_PP_V2_MAX_LEN, &again, tlvs,
                               NTLV, &reason) == 0);
    }

    /* Narrower settings can only refuse more: never accept what the reference refused. */
    static const unsigned accepts[] = {TP_PP_V1, TP_PP_V2, TP_PP_V1 | TP_PP_V2};
    static const size_t maxes[] = {0, 28, 232, 512};
    for (size_t a = 0; a < sizeof(accepts) / sizeof(accepts[0]); a++) {
        for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
            int rc = tp__pp_parse(data, size, accepts[a], maxes[m], &h, tlvs, NTLV, &reason);
            CHECK(rc <= (int)size);
            if (ref < 0)
                CHECK(rc < 0);
            else if (ref == 0)
                CHECK(rc <= 0);
            else
                CHECK(rc == ref || rc < 0);
            if (rc > 0)
                check_views(&h, data, (size_t)rc);
        }
    }
    /* Too little TLV storage can only add a refusal; without storage, only take one away. */
    int rc = tp__pp_parse(data, size, TP_PP_V1 | TP_PP_V2, TP_PP_V2_MAX_LEN, &h, tlvs, 1, &reason);
    CHECK(ref < 0 ? rc < 0 : (rc == ref || rc == TP_ERR_TOO_LARGE));
    rc = tp__pp_parse(data, size, TP_PP_V1 | TP_PP_V2, TP_PP_V2_MAX_LEN, &h, NULL, 0, &reason);
    CHECK(rc == ref || ref == TP_ERR_TOO_LARGE);
    return 0;
}
