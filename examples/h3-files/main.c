/* h3-files: a tiny HTTP/3 server over the H3 driver (turnpike/h3.h) that serves generated
 * content: GET /bytes/N answers N bytes of the testkit's pattern (byte i is i % 251) with a
 * content-length; POST /echo answers the request body back; anything else is 404. Interop
 * clients (ngtcp2's gtlsclient, turnpike-h3) download from it. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "turnpike/h3.h"

#define PERIOD 251
#define SLICE  65536
/* The largest /bytes/N served (1 TiB): bigger is a typo, answered 400. */
#define MAX_BYTES (1ULL << 40)

static uint8_t pattern[SLICE + PERIOD];

typedef struct req {
    uint64_t left;   /* body bytes still to queue */
    uint64_t offset; /* stream offset of the next one */
    bool echo;       /* POST /echo: the body is the request's */
    bool echo_fin;
} req_t;

typedef struct server {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    tp_h3_t *h3;
    tp_quic_endpoint_t *ep;
    uint64_t requests, responses_done, bytes_out;
} server_t;

static void usage(void) {
    fprintf(stderr,
            "usage: h3-files --listen ADDR:PORT --cert FILE --key FILE\n"
            "                [--retry always|never|load] [--qlog-dir DIR] [--keylog FILE]\n");
}

static void print_stats(server_t *srv, const char *why) {
    tp_quic_stats_t st;
    char json[2048];
    tp_quic_endpoint_stats(srv->ep, &st);
    tp_quic_stats_json(&st, json, sizeof(json));
    printf("{\"msg\":\"stats\",\"why\":\"%s\",\"requests\":%" PRIu64 ",\"responses_done\":%" PRIu64
           ",\"bytes_out\":%" PRIu64 ",\"stats\":%s}\n",
           why, srv->requests, srv->responses_done, srv->bytes_out, json);
    fflush(stdout);
}

static server_t *server_of(tp_h3_stream_t *s) {
    return tp_h3_data(tp_h3_conn_driver(tp_h3_stream_conn(s)));
}

/* Queues pattern bytes until the stream's body buffer is full or the body is done. */
static void pump(tp_h3_stream_t *s, req_t *r) {
    server_t *srv = server_of(s);
    while (r->left > 0) {
        size_t n = r->left < SLICE ? (size_t)r->left : SLICE;
        ssize_t w = tp_h3_stream_send(s, pattern + r->offset % PERIOD, n, n == r->left);
        if (w < 0) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->left -= (uint64_t)w;
        r->offset += (uint64_t)w;
        srv->bytes_out += (uint64_t)w;
        if ((size_t)w < n) {
            return; /* on_writable resumes */
        }
    }
}

static void answer(tp_h3_stream_t *s, const char *status, const char *body) {
    char len[24];
    snprintf(len, sizeof(len), "%zu", strlen(body));
    tp_h3_field_t f[] = {
        {":status", 7, status, strlen(status)},
        {"content-length", 14, len, strlen(len)},
        {"content-type", 12, "text/plain", 10},
    };
    if (tp_h3_respond(s, f, 3, body[0] == '\0') == 0 && body[0]) {
        tp_h3_stream_send(s, body, strlen(body), true);
    }
}

static bool field_is(const tp_h3_field_t *f, const char *name) {
    return f->name_len == strlen(name) && memcmp(f->name, name, f->name_len) == 0;
}

static void on_request(tp_h3_stream_t *s, const tp_h3_field_t *fields, size_t n) {
    server_t *srv = server_of(s);
    srv->requests++;
    const tp_h3_field_t *method = NULL;
    const tp_h3_field_t *path = NULL;
    for (size_t i = 0; i < n; i++) {
        if (field_is(&fields[i], ":method")) {
            method = &fields[i];
        } else if (field_is(&fields[i], ":path")) {
            path = &fields[i];
        }
    }
    if (!method || !path) {
        answer(s, "400", "bad request\n");
        return;
    }
    char p[256];
    size_t plen = path->value_len < sizeof(p) - 1 ? path->value_len : sizeof(p) - 1;
    memcpy(p, path->value, plen);
    p[plen] = '\0';
    bool get = method->value_len == 3 && !memcmp(method->value, "GET", 3);
    bool head = method->value_len == 4 && !memcmp(method->value, "HEAD", 4);
    bool post = method->value_len == 4 && !memcmp(method->value, "POST", 4);
    if ((get || head) && !strncmp(p, "/bytes/", 7)) {
        char *end;
        unsigned long long want = strtoull(p + 7, &end, 10);
        if (end == p + 7 || (*end != '\0' && *end != '?') || want > MAX_BYTES) {
            answer(s, "400", "bad size\n");
            return;
        }
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->left = head ? 0 : want;
        tp_h3_stream_set_data(s, r);
        char len[24];
        snprintf(len, sizeof(len), "%llu", want);
        tp_h3_field_t f[] = {
            {":status", 7, "200", 3},
            {"content-length", 14, len, strlen(len)},
            {"content-type", 12, "application/octet-stream", 24},
        };
        if (tp_h3_respond(s, f, 3, r->left == 0) == 0) {
            pump(s, r);
        }
        return;
    }
    if (post && !strcmp(p, "/echo")) {
        req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            tp_h3_stream_reset(s, TP_H3_INTERNAL_ERROR);
            return;
        }
        r->echo = true;
        tp_h3_stream_set_data(s, r);
        tp_h3_field_t f[] = {{":status", 7, "200", 3}};
        tp_h3_respond(s, f, 1, false);
        return;
    }
    answer(s, "404", "not found\n");
}

static void on_body(tp_h3_stream_t *s, const uint8_t *data, size_t len, bool fin) {
    req_t *r = tp_h3_stream_data(s);
    if (!r || !r->echo) {
        return;
    }
    /* The echo is bounded by the body buffer: a client that sends faster than it reads gets a
     * reset instead of growing memory here. */
    ssize_t w = len ? tp_h3_stream_send(s, data, len, false) : 0;
    if (w < 0 || (size_t)w < len) {
        tp_h3_stream_reset(s, TP_H3_EXCESSIVE_LOAD);
        return;
    }
    if (fin) {
        tp_h3_stream_send(s, NULL, 0, true);
    }
}

static void on_writable(tp_h3_stream_t *s) {
    req_t *r = tp_h3_stream_data(s);
    if (r && !r->echo) {
        pump(s, r);
    }
}

static void on_stream_close(tp_h3_stream_t *s) {
    req_t *r = tp_h3_stream_data(s);
    if (r && r->left == 0) {
        server_of(s)->responses_done++;
    }
    free(r);
}

static void on_conn_close(tp_h3_conn_t *c, const tp_quic_close_info_t *info) {
    print_stats(tp_h3_data(tp_h3_conn_driver(c)), "connection closed");
}

static const tp_h3_callbacks_t callbacks = {
    .on_request = on_request,
    .on_body = on_body,
    .on_writable = on_writable,
    .on_stream_close = on_stream_close,
    .on_conn_close = on_conn_close,
};

static void on_signal(uv_signal_t *sig, int signum) {
    server_t *srv = sig->data;
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    print_stats(srv, "exit");
    tp_quic_endpoint_close(srv->ep, NULL, NULL);
}

int main(int argc, char **argv) {
    tp_quic_settings_t qs;
    tp_quic_settings_default(&qs);
    qs.retry = TP_QUIC_RETRY_NEVER;
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--listen")) {
            listen = v;
        } else if (!strcmp(a, "--cert")) {
            qs.cert_file = v;
        } else if (!strcmp(a, "--key")) {
            qs.key_file = v;
        } else if (!strcmp(a, "--qlog-dir")) {
            qs.qlog_dir = v;
        } else if (!strcmp(a, "--keylog")) {
            qs.keylog_file = v;
        } else if (!strcmp(a, "--retry")) {
            qs.retry = !strcmp(v, "always") ? TP_QUIC_RETRY_ALWAYS
                       : !strcmp(v, "load") ? TP_QUIC_RETRY_UNDER_LOAD
                                            : TP_QUIC_RETRY_NEVER;
        } else {
            usage();
            return 2;
        }
    }
    tp_addr_t bind;
    if (!listen || tp_addr_parse(&bind, listen, false) != 0) {
        usage();
        return 2;
    }
    for (size_t i = 0; i < sizeof(pattern); i++) {
        pattern[i] = (uint8_t)(i % PERIOD);
    }
    server_t srv;
    memset(&srv, 0, sizeof(srv));
    uv_loop_init(&srv.loop);
    tp_h3_settings_t hs;
    tp_h3_settings_default(&hs);
    int rc = tp_h3_new(&srv.h3, true, &hs, &callbacks, &srv);
    if (rc == 0) {
        rc = tp_h3_endpoint_new(&srv.ep, &srv.loop, &bind, srv.h3, &qs);
    }
    if (rc != 0) {
        fprintf(stderr, "h3-files: cannot listen on %s: %s\n", listen, tp_strerror(rc));
        return 1;
    }
    tp_addr_t local;
    char text[TP_ADDR_STRLEN];
    tp_quic_endpoint_local_addr(srv.ep, &local);
    printf("{\"msg\":\"ready\",\"listen\":\"%s\",\"port\":%u}\n",
           tp_addr_format(&local, text, sizeof(text)), tp_addr_port(&local));
    fflush(stdout);
    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv.loop);
    tp_h3_del(srv.h3);
    return 0;
}
