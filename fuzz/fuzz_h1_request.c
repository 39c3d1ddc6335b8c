/* fuzz_h1_request.c: libFuzzer target for the HTTP/1 request framing glue (src/h1/request.c). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "h1/request.h"

typedef struct {
    size_t body;
} sink_t;

static int on_body(void *ctx, const char *at, size_t len) {
    sink_t *s = ctx;
    volatile char c = len ? at[len - 1] : 0; /* touch the bytes: ASan checks the bounds */
    (void)c;
    s->body += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    /* The first byte picks where reads are cut, so requests split across reads get covered. */
    size_t step = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    sink_t sink = {0};
    tp_h1_req_t r;
    if (tp__h1_req_init(&r, 1024, 16, &sink) != 0)
        return 0;
    r.on_body = on_body;
    size_t off = 0;
    int messages = 0;
    while ((off < size || r.kick) && messages < 64) {
        size_t n = size - off < step ? size - off : step;
        size_t used = 0;
        tp_h1_req_event_t ev = tp__h1_req_execute(&r, (const char *)data + off, n, &used);
        if (used > n)
            __builtin_trap();
        off += used;
        if (ev == TP_H1_REQ_ERROR) {
            /* Every refusal names its reason and one of the statuses the proxy answers with. */
            if (!r.err_detail ||
                (r.err_status != 400 && r.err_status != 414 && r.err_status != 431 &&
                 r.err_status != 501 && r.err_status != 505))
                __builtin_trap();
            break;
        }
        if (ev == TP_H1_REQ_HEAD) {
            tp_http_target_t t;
            const char *detail = NULL;
            int st = tp__h1_parse_target(&r, &t, &detail);
            if (st == 0 && t.host.len == 0)
                __builtin_trap(); /* a parsed target always names a host */
            if (st != 0 && !detail)
                __builtin_trap();
            for (size_t i = 0; i < r.head.nfields; i++) {
                tp_str_t name = tp__head_str(&r.head, r.head.fields[i].name);
                if (name.len == 0)
                    __builtin_trap(); /* empty names are refused */
                (void)tp__http_is_hop_by_hop(&r.head, name);
            }
            (void)tp__head_get(&r.head, "host");
        } else if (ev == TP_H1_REQ_MESSAGE) {
            /* Both parsers agreed on where the message ends (request.c checks it): no bytes
             * either one passed over are left between messages (a CONNECT's are tunnel bytes). */
            if (r.scan_ahead != 0 && r.framing != TP_H1_FRAMING_TUNNEL)
                __builtin_trap();
            messages++;
            tp__h1_req_next(&r);
        }
    }
    tp__h1_req_free(&r);
    return 0;
}
