/* conn.c: the HTTP/3 driver as an application over the QUIC runtime: QUIC callbacks feed
 * nghttp3, nghttp3 callbacks become the application's events, and what nghttp3 has to send is
 * copied into the QUIC streams (whose buffers then own it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h3/h3_int.h"

/* Field sections are collected here until they end; each field pins two nghttp3 buffers. */
#define FIELDS_INITIAL 16

/* Rounds of flush / notify per kick before yielding to the loop (a fast producer must not
 * starve other connections). */
#define KICK_ROUNDS 16

/* ---- streams ---- */

/* Closed streams kept per connection for the next ones, with their field arrays: a busy
 * connection opens and closes a stream per request, and malloc/free of the struct and of its
 * two field arrays showed in the profile. */
#if defined(__SANITIZE_ADDRESS__)
#define STREAM_CACHE_ON false /* under ASan every stream is freed: a use after close is caught */
#else
#define STREAM_CACHE_ON true
#endif
#define STREAM_CACHE 16
/* nghttp3's small allocations from the endpoint's cache (blocks.h; not under ASan either). */
#define H3_MEM_CACHE TP_QUIC_MEM_CACHE

tp_h3_stream_t *tp__h3_stream_new(tp_h3_conn_t *c, int64_t id) {
    tp_h3_stream_t *s = c->spare;
    if (s) {
        c->spare = s->next;
        c->nspare--;
        tp_h3_field_t *fields = s->fields;
        nghttp3_rcbuf **rcbufs = s->rcbufs;
        size_t cap = s->fields_cap;
        memset(s, 0, sizeof(*s));
        s->fields = fields;
        s->rcbufs = rcbufs;
        s->fields_cap = cap;
    } else {
        s = calloc(1, sizeof(*s));
        if (!s) {
            return NULL;
        }
    }
    s->conn = c;
    s->id = id;
    tp__h3_bodyq_init(&s->body, c->h3->s.body_buffer, c->blocks);
    s->next = c->streams;
    if (c->streams) {
        c->streams->prev = s;
    }
    c->streams = s;
    return s;
}

static void fields_release(tp_h3_stream_t *s) {
    for (size_t i = 0; i < s->nfields * 2; i++) {
        nghttp3_rcbuf_decref(s->rcbufs[i]);
    }
    s->nfields = 0;
    s->section_size = 0;
    s->too_large = false;
}

/* Frees what a stream holds (it is already out of the lists); the struct and its field arrays
 * of the initial size go to the connection's spares while there is room. */
static void stream_release(tp_h3_conn_t *c, tp_h3_stream_t *s) {
    fields_release(s);
    tp__h3_bodyq_free(&s->body);
    if (STREAM_CACHE_ON && c && c->nspare < STREAM_CACHE && s->fields_cap <= FIELDS_INITIAL) {
        s->next = c->spare;
        c->spare = s;
        c->nspare++;
        return;
    }
    free(s->fields);
    free(s->rcbufs);
    free(s);
}

void tp__h3_stream_free(tp_h3_conn_t *c, tp_h3_stream_t *s) {
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        c->streams = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    if (s->on_wr_list) {
        for (tp_h3_stream_t **pp = &c->wr_head; *pp; pp = &(*pp)->wr_next) {
            if (*pp == s) {
                *pp = s->wr_next;
                break;
            }
        }
    }
    stream_release(c, s);
}

void tp__h3_to_nv(nghttp3_nv *nv, const tp_h3_field_t *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        nv[i].name = (const uint8_t *)f[i].name;
        nv[i].namelen = f[i].name_len;
        nv[i].value = (const uint8_t *)f[i].value;
        nv[i].valuelen = f[i].value_len;
        nv[i].flags = NGHTTP3_NV_FLAG_NONE;
    }
}

/* ---- failures ---- */

void tp__h3_conn_fail(tp_h3_conn_t *c, int ngerr, const char *what) {
    if (c->closing) {
        return;
    }
    c->closing = true;
    uint64_t code = nghttp3_err_infer_quic_app_error_code(ngerr);
    char reason[160];
    snprintf(reason, sizeof(reason), "%s: %s", what, nghttp3_strerror(ngerr));
    (void)tp_quic_conn_close(c->q, code, reason);
}

static void fail_code(tp_h3_conn_t *c, uint64_t code, const char *reason) {
    if (c->closing) {
        return;
    }
    c->closing = true;
    (void)tp_quic_conn_close(c->q, code, reason);
}

/* ---- nghttp3 callbacks ---- */

static void want_writable_notify(tp_h3_conn_t *c, tp_h3_stream_t *s) {
    if (!s->on_wr_list) {
        s->on_wr_list = true;
        s->wr_next = c->wr_head;
        c->wr_head = s;
    }
}

static int ng_acked(nghttp3_conn *ng, int64_t id, uint64_t len, void *cud, void *sud) {
    tp_h3_stream_t *s = sud;
    if (s) {
        tp__h3_bodyq_release(&s->body, (size_t)len);
        /* The app hears of room once a quarter of the queue is free, not for every few KiB:
         * what it then sends leaves as one DATA frame. Refilled 11 KiB at a time, a 100 MiB
         * download went out in 9 000 DATA frames, and ngtcp2's gtlsclient paid per frame. */
        size_t room = tp__h3_bodyq_room(&s->body);
        if (s->want_writable && room > 0 && room >= s->conn->h3->s.body_buffer / 4) {
            want_writable_notify(s->conn, s);
        }
    }
    return 0;
}

static void consume(tp_h3_conn_t *c, int64_t id, size_t n) {
    if (n > 0) {
        (void)tp_quic_stream_consume(c->q, id, n);
    }
}

static int ng_recv_data(nghttp3_conn *ng, int64_t id, const uint8_t *data, size_t len, void *cud,
                        void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    bool deliver =
        s && !s->reset_pending && !s->reject_pending && !s->read_stopped && c->h3->cb.on_body;
    if (deliver) {
        c->h3->cb.on_body(s, data, len, false);
    }
    if (!deliver || !c->h3->s.manual_consume) {
        consume(c, id, len);
    }
    return 0;
}

static int ng_deferred_consume(nghttp3_conn *ng, int64_t id, size_t n, void *cud, void *sud) {
    consume(cud, id, n);
    return 0;
}

static int begin_section(tp_h3_conn_t *c, int64_t id, tp_h3_stream_t *s, bool trailers) {
    if (!s) {
        return 0;
    }
    fields_release(s);
    s->in_trailers = trailers;
    return 0;
}

static int ng_begin_headers(nghttp3_conn *ng, int64_t id, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    if (!s && c->h3->server) {
        s = tp__h3_stream_new(c, id);
        if (!s) {
            return NGHTTP3_ERR_CALLBACK_FAILURE;
        }
        if (nghttp3_conn_set_stream_user_data(ng, id, s) != 0 ||
            tp_quic_stream_set_data(c->q, id, s) != 0) {
            tp__h3_stream_free(c, s);
            return NGHTTP3_ERR_CALLBACK_FAILURE;
        }
    }
    return begin_section(c, id, s, false);
}

static int ng_begin_trailers(nghttp3_conn *ng, int64_t id, void *cud, void *sud) {
    return begin_section(cud, id, sud, true);
}

static int ng_recv_field(nghttp3_conn *ng, int64_t id, int32_t token, nghttp3_rcbuf *name,
                         nghttp3_rcbuf *value, uint8_t flags, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    if (!s || s->too_large) {
        return 0;
    }
    nghttp3_vec nm = nghttp3_rcbuf_get_buf(name);
    nghttp3_vec val = nghttp3_rcbuf_get_buf(value);
    s->section_size += tp__h3_field_cost(nm.len, val.len);
    if (s->section_size > c->h3->s.max_field_section_size) {
        /* Over the limit we announced: stop keeping fields (memory stays bounded) and answer
         * when the section ends. */
        fields_release(s);
        s->too_large = true;
        return 0;
    }
    if (s->nfields == s->fields_cap) {
        size_t cap = s->fields_cap ? s->fields_cap * 2 : FIELDS_INITIAL;
        tp_h3_field_t *f = realloc(s->fields, cap * sizeof(*f));
        if (!f) {
            return NGHTTP3_ERR_CALLBACK_FAILURE;
        }
        s->fields = f;
        nghttp3_rcbuf **r = realloc(s->rcbufs, cap * 2 * sizeof(nghttp3_rcbuf *));
        if (!r) {
            return NGHTTP3_ERR_CALLBACK_FAILURE;
        }
        s->rcbufs = r;
        s->fields_cap = cap;
    }
    nghttp3_rcbuf_incref(name);
    nghttp3_rcbuf_incref(value);
    s->rcbufs[s->nfields * 2] = name;
    s->rcbufs[s->nfields * 2 + 1] = value;
    s->fields[s->nfields] = (tp_h3_field_t){
        .name = (const char *)nm.base,
        .name_len = nm.len,
        .value = (const char *)val.base,
        .value_len = val.len,
    };
    s->nfields++;
    return 0;
}

static void mark_pending(tp_h3_conn_t *c) { c->has_pending = true; }

static const tp_h3_field_t *find_field(const tp_h3_stream_t *s, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < s->nfields; i++) {
        if (s->fields[i].name_len == n && memcmp(s->fields[i].name, name, n) == 0) {
            return &s->fields[i];
        }
    }
    return NULL;
}

static int ng_end_headers(nghttp3_conn *ng, int64_t id, int fin, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    if (!s) {
        return 0;
    }
    const tp_h3_callbacks_t *cb = &c->h3->cb;
    if (s->too_large) {
        if (c->h3->server) {
            s->reject_pending = true; /* 431, RFC 9114 4.2.2 */
        } else {
            s->reset_pending = true;
            s->reset_code = TP_H3_EXCESSIVE_LOAD;
        }
        mark_pending(c);
    } else if (c->h3->server) {
        s->got_final_headers = true;
        s->headers_fin = fin != 0;
        if (cb->on_request) {
            cb->on_request(s, s->fields, s->nfields);
        } else {
            static const tp_h3_field_t not_found[] = {{":status", 7, "404", 3}};
            (void)tp_h3_respond(s, not_found, 1, true);
        }
    } else {
        const tp_h3_field_t *st = find_field(s, ":status");
        int status = st ? tp__h3_parse_status(st->value, st->value_len) : -1;
        if (status >= 200) {
            s->got_final_headers = true;
        }
        if (cb->on_response) {
            cb->on_response(s, status, s->fields, s->nfields);
        }
    }
    fields_release(s);
    return 0;
}

static int ng_end_trailers(nghttp3_conn *ng, int64_t id, int fin, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    if (!s) {
        return 0;
    }
    if (s->too_large) {
        s->reset_pending = true;
        s->reset_code = TP_H3_EXCESSIVE_LOAD;
        mark_pending(c);
    } else if (c->h3->cb.on_trailers && !s->reset_pending && !s->reject_pending) {
        c->h3->cb.on_trailers(s, s->fields, s->nfields);
    }
    fields_release(s);
    return 0;
}

static int ng_end_stream(nghttp3_conn *ng, int64_t id, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    tp_h3_stream_t *s = sud;
    if (s && !s->fin_delivered && !s->reset_pending && !s->reject_pending && !s->read_stopped) {
        s->fin_delivered = true;
        if (c->h3->cb.on_body) {
            c->h3->cb.on_body(s, NULL, 0, true);
        }
    }
    return 0;
}

static int ng_stop_sending(nghttp3_conn *ng, int64_t id, uint64_t code, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    (void)tp_quic_stream_shutdown(c->q, id, TP_QUIC_RESET_RECV, code);
    return 0;
}

static int ng_reset_stream(nghttp3_conn *ng, int64_t id, uint64_t code, void *cud, void *sud) {
    tp_h3_conn_t *c = cud;
    (void)tp_quic_stream_shutdown(c->q, id, TP_QUIC_RESET_SEND, code);
    return 0;
}

static int ng_shutdown(nghttp3_conn *ng, int64_t id, void *cud) {
    tp_h3_conn_t *c = cud;
    c->goaway_received = true;
    if (c->h3->cb.on_goaway) {
        c->h3->cb.on_goaway(c, id);
    }
    return 0;
}

static int ng_recv_settings(nghttp3_conn *ng, const nghttp3_settings *st, void *cud) {
    tp_h3_conn_t *c = cud;
    c->peer_settings = true;
    c->peer_datagrams = st->h3_datagram != 0;
    c->peer_connect_protocol = st->enable_connect_protocol != 0;
    if (c->h3->cb.on_settings) {
        c->h3->cb.on_settings(c);
    }
    return 0;
}

static nghttp3_ssize ng_read_body(nghttp3_conn *ng, int64_t id, nghttp3_vec *vec, size_t veccnt,
                                  uint32_t *pflags, void *cud, void *sud) {
    tp_h3_stream_t *s = sud;
    if (!s) {
        *pflags |= NGHTTP3_DATA_FLAG_EOF;
        return 0;
    }
    size_t n = tp__h3_bodyq_lend(&s->body, vec, veccnt);
    if (n == 0 && !s->body_fin) {
        s->read_blocked = true;
        return NGHTTP3_ERR_WOULDBLOCK;
    }
    if (s->body_fin && tp__h3_bodyq_unlent(&s->body) == 0) {
        *pflags |= NGHTTP3_DATA_FLAG_EOF;
        s->eof_given = true;
    }
    return (nghttp3_ssize)n;
}

const nghttp3_data_reader tp__h3_body_reader = {.read_data = ng_read_body};

static const nghttp3_callbacks ng_callbacks = {
    .acked_stream_data = ng_acked,
    .recv_data = ng_recv_data,
    .deferred_consume = ng_deferred_consume,
    .begin_headers = ng_begin_headers,
    .recv_header = ng_recv_field,
    .end_headers = ng_end_headers,
    .begin_trailers = ng_begin_trailers,
    .recv_trailer = ng_recv_field,
    .end_trailers = ng_end_trailers,
    .stop_sending = ng_stop_sending,
    .end_stream = ng_end_stream,
    .reset_stream = ng_reset_stream,
    .shutdown = ng_shutdown,
    .recv_settings = ng_recv_settings,
};

/* ---- the connection ---- */

static int ng_new(tp_h3_conn_t *c) {
    tp_h3_t *h3 = c->h3;
    nghttp3_settings st;
    nghttp3_settings_default(&st);
    st.max_field_section_size = h3->s.max_field_section_size;
    st.qpack_max_dtable_capacity = h3->s.qpack_max_dtable_capacity;
    st.qpack_encoder_max_dtable_capacity = h3->s.qpack_encoder_max_dtable_capacity;
    st.qpack_blocked_streams = h3->s.qpack_blocked_streams;
    st.enable_connect_protocol = h3->server && h3->s.enable_connect_protocol;
    st.h3_datagram = h3->s.h3_datagram;
    const nghttp3_mem *mem = NULL; /* nghttp3's default (malloc), e.g. under ASan */
    if (H3_MEM_CACHE) {
        c->mem = (nghttp3_mem){.user_data = c->blocks,
                               .malloc = tp__quic_mem_malloc,
                               .free = tp__quic_mem_free,
                               .calloc = tp__quic_mem_calloc,
                               .realloc = tp__quic_mem_realloc};
        mem = &c->mem;
    }
    return h3->server ? nghttp3_conn_server_new(&c->ng, &ng_callbacks, &st, mem, c)
                      : nghttp3_conn_client_new(&c->ng, &ng_callbacks, &st, mem, c);
}

tp_h3_conn_t *tp__h3_conn_new(tp_h3_t *h3, tp_quic_endpoint_t *ep, tp_quic_conn_t *q, void *data) {
    tp_h3_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->h3 = h3;
    c->q = q;
    c->blocks = tp__quic_endpoint_blocks(ep);
    c->data = data;
    if (ng_new(c) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

static void conn_del(tp_h3_conn_t *c) {
    tp_h3_stream_t *s = c->streams;
    while (s) {
        tp_h3_stream_t *next = s->next;
        stream_release(NULL, s);
        s = next;
    }
    c->streams = NULL;
    while (c->spare) {
        s = c->spare;
        c->spare = s->next;
        stream_release(NULL, s);
    }
    c->wr_head = NULL;
    nghttp3_conn_del(c->ng);
    free(c);
}

/* The driver's state for a QUIC connection, made on first use on the server side. */
static tp_h3_conn_t *conn_of(tp_quic_conn_t *q) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    if (c) {
        return c;
    }
    tp_h3_t *h3 = tp_quic_endpoint_data(tp_quic_conn_endpoint(q));
    c = tp__h3_conn_new(h3, tp_quic_conn_endpoint(q), q, NULL);
    if (!c) {
        (void)tp_quic_conn_close(q, TP_H3_INTERNAL_ERROR, "out of memory");
        return NULL;
    }
    tp_quic_conn_set_data(q, c);
    return c;
}

static void stream_do_reset(tp_h3_conn_t *c, tp_h3_stream_t *s, uint64_t code) {
    s->reset_pending = false;
    s->body_fin = true;
    s->want_writable = false;
    (void)tp_quic_stream_shutdown(c->q, s->id, TP_QUIC_RESET_RECV | TP_QUIC_RESET_SEND, code);
    nghttp3_conn_shutdown_stream_write(c->ng, s->id);
    int rv = nghttp3_conn_shutdown_stream_read(c->ng, s->id);
    if (rv != 0) {
        tp__h3_conn_fail(c, rv, "shutdown stream");
    }
}

/* Work asked for while nghttp3 was calling us: resets, 431 answers, resumed bodies. */
static void run_pending(tp_h3_conn_t *c) {
    c->has_pending = false;
    for (tp_h3_stream_t *s = c->streams; s && !c->closing; s = s->next) {
        if (s->closed) {
            continue;
        }
        if (s->reject_pending) {
            s->reject_pending = false;
            static const tp_h3_field_t too_large[] = {{":status", 7, "431", 3},
                                                      {"content-length", 14, "0", 1}};
            if (!s->responded) {
                (void)tp_h3_respond(s, too_large, 2, true);
            }
            /* RFC 9114 4.1: the rest of the request is not needed; H3_NO_ERROR. */
            (void)tp_quic_stream_shutdown(c->q, s->id, TP_QUIC_RESET_RECV, TP_H3_NO_ERROR);
            int rv = nghttp3_conn_shutdown_stream_read(c->ng, s->id);
            if (rv != 0) {
                tp__h3_conn_fail(c, rv, "shutdown stream");
            }
        }
        if (s->stop_pending) {
            s->stop_pending = false;
            (void)tp_quic_stream_shutdown(c->q, s->id, TP_QUIC_RESET_RECV, s->stop_code);
            int rv = nghttp3_conn_shutdown_stream_read(c->ng, s->id);
            if (rv != 0) {
                tp__h3_conn_fail(c, rv, "shutdown stream");
            }
        }
        if (s->reset_pending) {
            stream_do_reset(c, s, s->reset_code);
        }
        if (s->read_blocked && (tp__h3_bodyq_unlent(&s->body) > 0 || s->body_fin)) {
            s->read_blocked = false;
            int rv = nghttp3_conn_resume_stream(c->ng, s->id);
            if (rv != 0) {
                tp__h3_conn_fail(c, rv, "resume stream");
            }
        }
    }
}

/* Copies what nghttp3 has into the QUIC streams. The QUIC runtime keeps its own copy until the
 * peer acknowledges it, so nghttp3 may drop the bytes at once (add_ack_offset). */
static int flush(tp_h3_conn_t *c) {
    nghttp3_vec vec[16];
    /* Each pass either writes to a stream or blocks it, so this ends; the bound is a guard. */
    for (int pass = 0; pass < 4096 && !c->closing; pass++) {
        int64_t sid = -1;
        int fin = 0;
        c->in_ng++;
        nghttp3_ssize n = nghttp3_conn_writev_stream(c->ng, &sid, &fin, vec, 16);
        c->in_ng--;
        if (n < 0) {
            tp__h3_conn_fail(c, (int)n, "writev_stream");
            return -1;
        }
        if (sid < 0 || (n == 0 && !fin)) {
            return 0; /* nothing to send (an empty, unfinished write would spin) */
        }
        size_t written = 0;
        bool blocked = false;
        ssize_t err = 0;
        for (nghttp3_ssize i = 0; i < n; i++) {
            bool last = fin && i == n - 1;
            ssize_t w = tp_quic_stream_write(c->q, sid, vec[i].base, vec[i].len, last);
            if (w < 0) {
                err = w;
                break;
            }
            written += (size_t)w;
            if ((size_t)w < vec[i].len) {
                blocked = true;
                break;
            }
        }
        if (n == 0 && fin) {
            ssize_t w = tp_quic_stream_write(c->q, sid, NULL, 0, true);
            if (w < 0) {
                err = w;
            }
        }
        if (err < 0 && written == 0) {
            /* The stream was reset (by us or STOP_SENDING) or is gone: nothing more for it. */
            nghttp3_conn_shutdown_stream_write(c->ng, sid);
            continue;
        }
        int rv = nghttp3_conn_add_write_offset(c->ng, sid, written);
        if (rv == 0) {
            c->in_ng++;
            rv = nghttp3_conn_add_ack_offset(c->ng, sid, written);
            c->in_ng--;
        }
        if (rv != 0) {
            tp__h3_conn_fail(c, rv, "write offset");
            return -1;
        }
        if (blocked || err < 0) {
            nghttp3_conn_block_stream(c->ng, sid);
        }
    }
    return 0;
}

static void notify_writable(tp_h3_conn_t *c) {
    while (c->wr_head && !c->closing) {
        tp_h3_stream_t *s = c->wr_head;
        c->wr_head = s->wr_next;
        s->on_wr_list = false;
        if (s->closed || !s->want_writable) {
            continue;
        }
        s->want_writable = false;
        if (c->h3->cb.on_writable) {
            c->h3->cb.on_writable(s);
        }
    }
}

static void check_drained(tp_h3_conn_t *c) {
    if (c->goaway_final && !c->closing && nghttp3_conn_is_drained(c->ng)) {
        fail_code(c, TP_H3_NO_ERROR, "goaway: drained");
    }
}

void tp__h3_conn_kick(tp_h3_conn_t *c) {
    if (c->closing) {
        return;
    }
    if (c->in_ng > 0 || c->flushing) {
        c->again = true;
        return;
    }
    c->flushing = true;
    for (int round = 0; round < KICK_ROUNDS && !c->closing; round++) {
        c->again = false;
        if (c->has_pending) {
            run_pending(c);
        }
        if (flush(c) != 0) {
            break;
        }
        notify_writable(c);
        if (!c->again && !c->has_pending) {
            break;
        }
    }
    c->flushing = false;
    if ((c->again || c->has_pending) && !c->closing) {
        tp_quic_conn_wake(c->q); /* more next iteration */
    }
    /* A final GOAWAY counts as sent once flushed: with no request left the connection ends now,
     * not at the next stream close (an idle or vanished client would never cause one). */
    check_drained(c);
}

/* ---- QUIC callbacks ---- */

/* Stream data and stream closes come many to a packet (a loaded client puts a dozen requests in
 * one): rather than flush nghttp3 after each, the runtime calls on_wake once, after the receive
 * batch and before the connection writes, and one flush serves them all. */
static void kick_later(tp_h3_conn_t *c) { tp_quic_conn_wake(c->q); }

/* Opens and binds our control and QPACK streams: when the handshake completes, or on a server
 * already when a request arrives in 0-RTT (the answer then leaves as 0.5-RTT data). */
static void h3_setup(tp_quic_conn_t *q) {
    tp_h3_conn_t *c = conn_of(q);
    if (!c || c->ready || c->closing) {
        return;
    }
    c->early_rejected = false;
    int64_t ctrl = tp_quic_stream_open(q, false);
    int64_t qenc = ctrl >= 0 ? tp_quic_stream_open(q, false) : -1;
    int64_t qdec = qenc >= 0 ? tp_quic_stream_open(q, false) : -1;
    if (qdec < 0) {
        /* RFC 9114 6.2: a peer must allow at least three unidirectional streams. */
        fail_code(c, TP_H3_STREAM_CREATION_ERROR, "peer allows fewer than 3 uni streams");
        return;
    }
    int rv = nghttp3_conn_bind_control_stream(c->ng, ctrl);
    if (rv == 0) {
        rv = nghttp3_conn_bind_qpack_streams(c->ng, qenc, qdec);
    }
    if (rv != 0) {
        tp__h3_conn_fail(c, rv, "bind streams");
        return;
    }
    uint64_t peer_bidi = tp_quic_conn_initial_peer_streams_bidi(q);
    nghttp3_conn_set_max_concurrent_streams(c->ng, (size_t)peer_bidi);
    if (c->h3->server) {
        c->max_client_bidi = peer_bidi;
        nghttp3_conn_set_max_client_streams_bidi(c->ng, c->max_client_bidi);
    }
    c->ready = true;
    if (c->h3->cb.on_conn_ready) {
        c->h3->cb.on_conn_ready(c);
    }
    tp__h3_conn_kick(c);
}

static void q_established(tp_quic_conn_t *q) { h3_setup(q); }

/* Client: the server refused our 0-RTT and the runtime forgot every stream (on_stream_close
 * follows for each). Start HTTP/3 over: a fresh nghttp3 state, set up again on_established,
 * and each request is reported reset with H3_REQUEST_REJECTED (safe to retry: the server saw
 * none of it); on_conn_ready runs again and the app makes its requests anew. */
static void q_early_rejected(tp_quic_conn_t *q) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    if (!c || c->closing) {
        return;
    }
    nghttp3_conn_del(c->ng);
    c->ng = NULL;
    c->ready = false;
    c->early_rejected = true;
    c->wr_head = NULL;
    for (tp_h3_stream_t *s = c->streams; s; s = s->next) {
        s->on_wr_list = false;
        s->wr_next = NULL;
    }
    if (ng_new(c) != 0) {
        fail_code(c, TP_H3_INTERNAL_ERROR, "out of memory");
    }
}

static void q_stream_data(tp_quic_conn_t *q, int64_t id, const uint8_t *data, size_t len, bool fin,
                          void *sd) {
    if (tp_quic_conn_in_early_data(q)) {
        h3_setup(q);
    }
    tp_h3_conn_t *c = conn_of(q);
    if (!c || c->closing) {
        return;
    }
    c->in_ng++;
    nghttp3_ssize n = nghttp3_conn_read_stream(c->ng, id, data, len, fin);
    c->in_ng--;
    if (n < 0) {
        tp__h3_conn_fail(c, (int)n, "read_stream");
        return;
    }
    consume(c, id, (size_t)n);
    kick_later(c);
}

static void q_writable(tp_quic_conn_t *q, int64_t id, void *sd) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    if (!c || c->closing) {
        return;
    }
    if (id < 0) {
        if (!c->h3->server && c->h3->cb.on_streams_available) {
            c->h3->cb.on_streams_available(c);
        }
        return;
    }
    int rv = nghttp3_conn_unblock_stream(c->ng, id);
    if (rv != 0) {
        tp__h3_conn_fail(c, rv, "unblock stream");
        return;
    }
    tp__h3_conn_kick(c);
}

static void q_stream_reset(tp_quic_conn_t *q, int64_t id, tp_quic_reset_dir_t dir, uint64_t code,
                           void *sd) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    tp_h3_stream_t *s = sd;
    if (!c || c->closing) {
        return;
    }
    if (dir == TP_QUIC_RESET_SEND) {
        /* The QUIC stack answers STOP_SENDING with RESET_STREAM; nghttp3 stops producing. The
         * other direction goes on: a server that stopped a request body with H3_NO_ERROR still
         * sends its complete response (RFC 9114 4.1), and the client must read it. */
        nghttp3_conn_shutdown_stream_write(c->ng, id);
        if (s) {
            s->body_fin = true;
            s->want_writable = false;
        }
    } else {
        c->in_ng++;
        int rv = nghttp3_conn_shutdown_stream_read(c->ng, id);
        c->in_ng--;
        if (rv != 0) {
            tp__h3_conn_fail(c, rv, "shutdown stream");
            return;
        }
    }
    if (s && c->h3->cb.on_reset) {
        c->h3->cb.on_reset(s, dir, code);
    }
    tp__h3_conn_kick(c);
}

static void q_stream_close(tp_quic_conn_t *q, int64_t id, void *sd) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    tp_h3_stream_t *s = sd;
    if (!c) {
        return;
    }
    if (!c->closing) {
        c->in_ng++;
        int rv = nghttp3_conn_close_stream(c->ng, id, TP_H3_NO_ERROR);
        c->in_ng--;
        if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) {
            tp__h3_conn_fail(c, rv, "close stream");
        }
        bool peer_bidi = (id & 0x3) == 0 && c->h3->server;
        if (peer_bidi && !c->closing) {
            /* The runtime lets the client open one more in its place; nghttp3 must agree. */
            c->max_client_bidi++;
            nghttp3_conn_set_max_client_streams_bidi(c->ng, c->max_client_bidi);
        }
    }
    if (s) {
        s->closed = true;
        if (c->early_rejected && c->h3->cb.on_reset) {
            c->h3->cb.on_reset(s, TP_QUIC_RESET_RECV | TP_QUIC_RESET_SEND, TP_H3_REQUEST_REJECTED);
        }
        if (c->h3->cb.on_stream_close) {
            c->h3->cb.on_stream_close(s);
        }
        tp__h3_stream_free(c, s);
    }
    if (!c->closing) {
        check_drained(c);
        kick_later(c);
    }
}

static void q_datagram(tp_quic_conn_t *q, const uint8_t *data, size_t len) {
    tp_h3_conn_t *c = conn_of(q);
    if (!c || c->closing) {
        return;
    }
    uint64_t qid = 0;
    size_t k = tp__h3_varint_decode(data, len, &qid);
    /* RFC 9297 2.1: without the setting, or a Quarter Stream ID no client stream can have, or
     * an unreadable one, is H3_DATAGRAM_ERROR. */
    if (!c->h3->s.h3_datagram || k == 0 || qid >= (1ULL << 60)) {
        fail_code(c, TP_H3_DATAGRAM_ERROR, "malformed or unexpected HTTP datagram");
        return;
    }
    if (!c->h3->cb.on_datagram) {
        return;
    }
    int64_t sid = (int64_t)(qid * 4);
    tp_h3_stream_t *s = c->streams;
    while (s && s->id != sid) {
        s = s->next;
    }
    c->h3->cb.on_datagram(c, qid, s && !s->closed ? s : NULL, data + k, len - k);
    tp__h3_conn_kick(c);
}

static void q_wake(tp_quic_conn_t *q) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    if (c && !c->ready && !c->h3->server && tp_quic_conn_early_data(q) == TP_QUIC_EARLY_SENT) {
        h3_setup(q); /* 0-RTT: the requests go with the first flight */
    }
    if (c) {
        tp__h3_conn_kick(c);
    }
}

static void q_close(tp_quic_conn_t *q, const tp_quic_close_info_t *info) {
    tp_h3_conn_t *c = tp_quic_conn_data(q);
    if (!c) {
        return; /* a server connection that never got as far as HTTP/3 */
    }
    c->closing = true;
    if (c->connecting) {
        /* The first flight failed inside tp_quic_connect(): tp_h3_connect() reports it. */
        c->closed_early = true;
        tp_quic_conn_set_data(q, NULL);
        return;
    }
    if (c->h3->cb.on_conn_close) {
        c->h3->cb.on_conn_close(c, info);
    }
    tp_quic_conn_set_data(q, NULL);
    conn_del(c);
}

static const tp_quic_app_t h3_app = {
    .on_established = q_established,
    .on_stream_data = q_stream_data,
    .on_writable = q_writable,
    .on_stream_reset = q_stream_reset,
    .on_stream_close = q_stream_close,
    .on_datagram = q_datagram,
    .on_wake = q_wake,
    .on_early_rejected = q_early_rejected,
    .on_close = q_close,
};

const tp_quic_app_t *tp_h3_quic_app(void) { return &h3_app; }
