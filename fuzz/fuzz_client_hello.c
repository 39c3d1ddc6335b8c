/* fuzz_client_hello.c: libFuzzer target for the ClientHello parser of the SNI peek. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tls/client_hello.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static uint8_t scratch[TP_TLS_HELLO_MAX];

/* A view is absent or lies inside one of the two buffers; touching its ends lets ASan check it. */
static void check_view(tp_str_t s, const uint8_t *in, size_t n) {
    if (!s.ptr) {
        CHECK(s.len == 0);
        return;
    }
    const uint8_t *p = (const uint8_t *)s.ptr;
    bool in_input = p >= in && p + s.len <= in + n;
    bool in_scratch = p >= scratch && p + s.len <= scratch + sizeof(scratch);
    CHECK(in_input || in_scratch);
    CHECK(s.len > 0);
    volatile uint8_t c = p[0] ^ p[s.len - 1];
    (void)c;
}

static void check_hello(const tp_tls_client_hello_t *h, const uint8_t *in, size_t n) {
    check_view(h->sni, in, n);
    CHECK(h->sni.len <= 255);
    for (size_t i = 0; h->sni.ptr && i < h->sni.len; i++)
        CHECK(h->sni.ptr[i] > 0x20 && h->sni.ptr[i] < 0x7f);
    CHECK(h->nalpn <= TP_TLS_HELLO_MAX_ALPN);
    for (size_t i = 0; i < h->nalpn; i++)
        check_view(h->alpn[i], in, n);
    CHECK((h->legacy_version >> 8) == 3);
    CHECK(h->ncipher_suites >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tp_tls_client_hello_t h;
    const char *reason;
    /* The reference: with a reassembly buffer. */
    int ref = tp__tls_hello_parse(data, size, scratch, sizeof(scratch), &h, &reason);
    CHECK(ref <= (int)size);
    CHECK((ref < 0) == (reason != NULL));
    CHECK(ref >= 0 || ref == TP_ERR_PROTOCOL || ref == TP_ERR_TOO_LARGE);
    if (ref > 0) {
        check_hello(&h, data, size);
        tp_tls_client_hello_t again;
        /* The records alone parse the same; every prefix of them asks for more. */
        CHECK(tp__tls_hello_parse(data, (size_t)ref, scratch, sizeof(scratch), &again, &reason) ==
              ref);
        CHECK(again.nalpn == h.nalpn && again.sni.len == h.sni.len &&
              again.max_version == h.max_version);
        const size_t cuts[] = {0, 1, 5, (size_t)ref / 2, (size_t)ref - 1};
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
            if (cuts[i] < (size_t)ref)
                CHECK(tp__tls_hello_parse(data, cuts[i], scratch, sizeof(scratch), &again,
                                          &reason) == 0);
    } else {
        CHECK(h.sni.ptr == NULL && h.nalpn == 0);
    }
    /* Without a reassembly buffer: the same answer, or "split across records". */
    int rc = tp__tls_hello_parse(data, size, NULL, 0, &h, &reason);
    CHECK(rc == ref || rc == TP_ERR_TOO_LARGE);
    if (rc > 0)
        check_hello(&h, data, size);
    return 0;
}
