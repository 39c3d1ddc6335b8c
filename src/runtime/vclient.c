/* vclient.c: the client side of a connection that is not a TCP socket (an HTTP/3 request stream):
 * writes that wait for room, the end after them, client bytes held while the protocol does not
 * read, and the close. conn.c calls in here wherever it would use the client's socket. */
#include <stdlib.h>
#include <string.h>

#include "runtime/core.h"

/* Ends the stream toward the client once asked and nothing waits (not even a corked batch). */
static void maybe_end(tp_conn_t *conn) {
    tp_vclient_t *vc = conn->vc;
    if (!vc->end_wanted || vc->ended || vc->over_len || conn->batch[TP_TO_CLIENT].r ||
        conn->closing)
        return;
    vc->ended = true;
    vc->ops->end(conn);
}

/* Keeps bytes the transport had no room for, after those already waiting. */
static int over_add(tp_conn_t *conn, const uint8_t *p, size_t len) {
    tp_vclient_t *vc = conn->vc;
    if (vc->over_off && vc->over_off + vc->over_len + len > vc->over_cap) {
        memmove(vc->over, vc->over + vc->over_off, vc->over_len);
        vc->over_off = 0;
    }
    if (vc->over_off + vc->over_len + len > vc->over_cap) {
        size_t cap = vc->over_cap ? vc->over_cap : 16384;
        while (cap < vc->over_len + len)
            cap *= 2;
        uint8_t *m = realloc(vc->over, cap);
        if (!m)
            return TP_ERR_NOMEM;
        vc->over = m;
        vc->over_cap = cap;
    }
    memcpy(vc->over + vc->over_off + vc->over_len, p, len);
    vc->over_len += len;
    conn->queued[TP_TO_CLIENT] += len;
    return 0;
}

int tp__vc_write(tp_conn_t *conn, const uv_buf_t *bufs, unsigned n) {
    tp_vclient_t *vc = conn->vc;
    if (vc->ended)
        return TP_ERR_STATE;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)bufs[i].base;
        size_t len = bufs[i].len;
        if (vc->over_len == 0 && len) { /* nothing waits: straight to the transport */
            ssize_t k = vc->ops->write(conn, p, len);
            if (k < 0)
                return (int)k;
            conn->stats.bytes_to_client += (uint64_t)k;
            p += k;
            len -= (size_t)k;
        }
        if (len && over_add(conn, p, len) != 0)
            return TP_ERR_NOMEM;
    }
    tp__conn_touch(conn);
    maybe_end(conn);
    return 0;
}

void tp__vc_writable(tp_conn_t *conn) {
    tp_vclient_t *vc = conn->vc;
    if (conn->closing)
        return;
    if (vc->over_len) {
        ssize_t k = vc->ops->write(conn, vc->over + vc->over_off, vc->over_len);
        if (k < 0) {
            tp__conn_close(conn, TP_CLOSE_CLIENT_RESET);
            return;
        }
        if (k == 0)
            return;
        vc->over_off += (size_t)k;
        vc->over_len -= (size_t)k;
        if (vc->over_len == 0)
            vc->over_off = 0;
        conn->queued[TP_TO_CLIENT] -= (size_t)k;
        conn->stats.bytes_to_client += (uint64_t)k;
        tp__conn_touch(conn);
        maybe_end(conn);
        if (!conn->closing)
            conn->proto->on_written(conn, TP_TO_CLIENT, 0);
        return;
    }
    maybe_end(conn);
}

void tp__vc_end(tp_conn_t *conn) {
    conn->vc->end_wanted = true;
    maybe_end(conn);
}

/* Hands waiting client bytes, then the end, to the protocol while it reads. */
static void pump(tp_conn_t *conn) {
    tp_vclient_t *vc = conn->vc;
    while (conn->client_reading && !conn->closing && vc->in_head) {
        tp_vc_chunk_t *c = vc->in_head;
        vc->in_head = c->next;
        if (!vc->in_head)
            vc->in_tail = NULL;
        vc->in_bytes -= c->len;
        tp_buf_t *b = c->b;
        size_t len = c->len;
        free(c);
        vc->ops->consumed(conn, len);
        conn->proto->on_client_read(conn, b, (ssize_t)len);
    }
    if (vc->in_head || conn->closing || !conn->client_reading || conn->client_eof)
        return;
    if (vc->in_err) {
        conn->client_reading = false;
        conn->proto->on_client_read(conn, NULL, UV_ECONNRESET);
    } else if (vc->in_eof) {
        conn->client_eof = true;
        conn->client_reading = false;
        conn->proto->on_client_read(conn, NULL, UV_EOF);
    }
}

int tp__vc_deliver(tp_conn_t *conn, const uint8_t *p, size_t len, bool fin, bool reset) {
    tp_vclient_t *vc = conn->vc;
    if (conn->closing)
        return TP_ERR_CLOSED;
    while (len) {
        tp_vc_chunk_t *t = vc->in_tail;
        size_t room = t ? t->b->cap - t->len : 0;
        if (!room) {
            tp_buf_t *b = tp__buf_get(&conn->worker->bufs);
            tp_vc_chunk_t *c = b ? malloc(sizeof(*c)) : NULL;
            if (!c) {
                if (b)
                    tp__buf_unref(b);
                tp__conn_close(conn, TP_CLOSE_INTERNAL);
                return TP_ERR_NOMEM;
            }
            *c = (tp_vc_chunk_t){.b = b};
            if (t)
                t->next = c;
            else
                vc->in_head = c;
            vc->in_tail = t = c;
            room = b->cap;
        }
        size_t k = len < room ? len : room;
        memcpy(t->b->data + t->len, p, k);
        t->len += k;
        vc->in_bytes += k;
        p += k;
        len -= k;
        conn->stats.bytes_from_client += k;
        tp__conn_touch(conn);
        conn->last_from_client = conn->last_activity;
    }
    if (fin)
        vc->in_eof = true;
    if (reset)
        vc->in_err = true;
    pump(conn);
    return 0;
}

void tp__vc_read(tp_conn_t *conn, bool on) {
    if (on)
        pump(conn);
}

static void drop_input(tp_vclient_t *vc) {
    while (vc->in_head) {
        tp_vc_chunk_t *c = vc->in_head;
        vc->in_head = c->next;
        tp__buf_unref(c->b);
        free(c);
    }
    vc->in_tail = NULL;
    vc->in_bytes = 0;
}

void tp__vc_close(tp_conn_t *conn) {
    tp_vclient_t *vc = conn->vc;
    drop_input(vc);
    vc->ops->close(conn);
}

void tp__vc_free(tp_conn_t *conn) {
    tp_vclient_t *vc = conn->vc;
    drop_input(vc);
    if (vc->ops->free)
        vc->ops->free(conn);
    free(vc->over);
    tp_conn_t *parent = vc->parent;
    free(vc);
    conn->vc = NULL;
    if (parent) {
        tp_conn_stats_t *p = &parent->stats;
        p->bytes_from_client += conn->stats.bytes_from_client;
        p->bytes_to_client += conn->stats.bytes_to_client;
        p->bytes_from_upstream += conn->stats.bytes_from_upstream;
        p->bytes_to_upstream += conn->stats.bytes_to_upstream;
        p->requests += conn->stats.requests;
        tp__conn_unref(parent);
    }
}
