/* endpoint.c: a QUIC endpoint on one loop: settings, the inbound packet router (DCID lookup,
 * short-header fast path, hand-off to other workers), new connections (Version Negotiation,
 * Retry, token checks), stateless resets, the flush list and the endpoint's life cycle. */
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "quic/quic_int.h"

/* Long enough that the reset cannot be told apart from a short-header packet of our CIDs
 * (1 + CID + 5 random + 16 token), and smaller than the packet that triggers it. */
#define MIN_RESET_TRIGGER                                                                          \
    (1 + TP_QUIC_CID_LEN + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1)
#define MAX_RECV_BATCHES 8 /* per poll callback, so one busy socket cannot starve the loop */

void tp_quic_settings_default(tp_quic_settings_t *s) {
    memset(s, 0, sizeof(*s));
    s->initial_max_data = 10000000;
    s->initial_max_stream_data = 1000000;
    s->initial_max_streams_bidi = 100;
    s->initial_max_streams_uni = 100;
    s->max_window = (uint64_t)24 << 20;
    s->max_stream_window = (uint64_t)16 << 20;
    s->idle_timeout_ms = 56000;
    s->handshake_timeout_ms = 10000;
    s->active_connection_id_limit = 4;
    s->datagrams = true;
    s->max_datagram_frame_size = 65535;
    s->datagram_send_queue = 1024;
    s->early_data = false;
    s->retry = TP_QUIC_RETRY_ALWAYS;
    s->retry_threshold = 256;
    s->cc = TP_QUIC_CC_CUBIC;
    s->stream_send_buffer = (size_t)1 << 20;
    s->max_udp_payload = 0; /* auto: from the route to each peer */
    s->stateless_resets_per_sec = 100;
    s->max_connections = 10000;
    s->reuseport_steering = true;
}

static int check_settings(const tp_quic_settings_t *s, bool server, const tp_quic_app_t *app) {
    if (!app || !app->on_stream_data || !s->alpn || !s->alpn[0] ||
        strlen(s->alpn) > TP_QUIC_ALPN_MAX) {
        return TP_ERR_INVAL;
    }
    if (server && (!s->cert_file || !s->key_file)) {
        return TP_ERR_INVAL;
    }
    if (s->active_connection_id_limit < 2 || s->active_connection_id_limit > 8 ||
        (s->max_udp_payload != 0 &&
         (s->max_udp_payload < 1200 || s->max_udp_payload > TP_QUIC_MAX_UDP_PAYLOAD)) ||
        s->initial_max_streams_bidi > (1ULL << 60) || s->initial_max_streams_uni > (1ULL << 60) ||
        s->stream_send_buffer == 0 || s->datagram_send_queue == 0 ||
        s->datagram_send_queue > 65536 || s->retry > TP_QUIC_RETRY_UNDER_LOAD ||
        s->cc > TP_QUIC_CC_RENO || s->idle_timeout_ms == 0 || s->handshake_timeout_ms == 0 ||
        s->max_connections == 0) {
        return TP_ERR_INVAL;
    }
    return 0;
}

static int dup_str(char **dst, const char **field) {
    if (!*field) {
        return 0;
    }
    *dst = strdup(*field);
    if (!*dst) {
        return TP_ERR_NOMEM;
    }
    *field = *dst;
    return 0;
}

static void ep_free_mem(tp_quic_endpoint_t *ep) {
    tp__quic_udp_close_fd(&ep->udp);
    tp__quic_tls_free(&ep->tls);
    tp__quic_router_free(&ep->router);
    tp__quic_blocks_clear(&ep->blocks);
    free(ep->str_alpn);
    free(ep->str_cert);
    free(ep->str_key);
    free(ep->str_ca);
    free(ep->str_qlog);
    free(ep->str_keylog);
    free(ep);
}

static void poll_cb(uv_poll_t *h, int status, int events);
static void idle_cb(uv_idle_t *h);

int tp__quic_endpoint_make(tp_quic_endpoint_t **out, uv_loop_t *loop, const tp_addr_t *bind,
                           bool server, const tp_quic_settings_t *settings,
                           const tp_quic_app_t *app, void *app_data, bool probe) {
    int rc = check_settings(settings, server, app);
    if (rc != 0) {
        return rc;
    }
    tp_quic_endpoint_t *ep = calloc(1, sizeof(*ep));
    if (!ep) {
        return TP_ERR_NOMEM;
    }
    ep->udp.fd = -1;
    ep->loop = loop;
    ep->server = server;
    ep->s = *settings;
    ep->app = *app;
    ep->app_data = app_data;
    ep->worker = settings->worker_index;
    if ((rc = dup_str(&ep->str_alpn, &ep->s.alpn)) != 0 ||
        (rc = dup_str(&ep->str_cert, &ep->s.cert_file)) != 0 ||
        (rc = dup_str(&ep->str_key, &ep->s.key_file)) != 0 ||
        (rc = dup_str(&ep->str_ca, &ep->s.ca_file)) != 0 ||
        (rc = dup_str(&ep->str_qlog, &ep->s.qlog_dir)) != 0 ||
        (rc = dup_str(&ep->str_keylog, &ep->s.keylog_file)) != 0) {
        ep_free_mem(ep);
        return rc;
    }
    memcpy(ep->secret,
           settings->static_secret ? settings->static_secret : tp__quic_process_secret(),
           TP_QUIC_SECRET_LEN);
    ep->s.static_secret = NULL; /* not kept: ep->secret holds the bytes */
    if ((rc = tp__quic_tls_init(&ep->tls, server, &ep->s, ep->secret)) != 0 ||
        (rc = tp__quic_router_init(&ep->router, 64)) != 0 ||
        (rc = tp__quic_udp_open(&ep->udp, bind, !server, probe,
                                tp__quic_max_udp_payload_bound(&ep->s))) != 0) {
        ep_free_mem(ep);
        return rc;
    }
    ep->reset_tokens = ep->s.stateless_resets_per_sec;
    ep->reset_tokens_ms = uv_now(loop);
    if (uv_poll_init_socket(loop, &ep->udp.poll, ep->udp.fd) != 0) {
        ep_free_mem(ep);
        return TP_ERR_IO;
    }
    ep->udp.poll.data = ep;
    uv_idle_init(loop, &ep->idle);
    ep->idle.data = ep;
    ep->handles_open = 2;
    ep->udp.poll_events = UV_READABLE;
    uv_poll_start(&ep->udp.poll, UV_READABLE, poll_cb);
    *out = ep;
    return 0;
}

int tp_quic_endpoint_new(tp_quic_endpoint_t **out, uv_loop_t *loop, const tp_addr_t *bind,
                         bool server, const tp_quic_settings_t *settings, const tp_quic_app_t *app,
                         void *app_data) {
    return tp__quic_endpoint_make(out, loop, bind, server, settings, app, app_data, true);
}

void tp_quic_endpoint_local_addr(const tp_quic_endpoint_t *ep, tp_addr_t *out) {
    *out = ep->udp.local;
}

void *tp_quic_endpoint_data(const tp_quic_endpoint_t *ep) { return ep->app_data; }

void tp_quic_endpoint_stats(const tp_quic_endpoint_t *ep, tp_quic_stats_t *out) {
    *out = ep->stats;
}

size_t tp_quic_stats_json(const tp_quic_stats_t *st, char *buf, size_t size) {
    int n = snprintf(
        buf, size,
        "{\"connections\":%llu,\"handshakes\":%llu,\"handshake_time_us\":%llu,"
        "\"resumed_handshakes\":%llu,\"early_data_accepted\":%llu,\"early_data_rejected\":%llu,"
        "\"key_updates\":%llu,"
        "\"failed_handshakes\":%llu,\"accepted_initials\":%llu,\"rejected_initials\":%llu,"
        "\"retries_sent\":%llu,\"version_negotiations\":%llu,\"stateless_resets\":%llu,"
        "\"invalid_cid_packets\":%llu,\"handed_off\":%llu,\"udp_drops\":%llu,"
        "\"packets_in\":%llu,\"packets_out\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,"
        "\"gso_batches\":%llu,\"ecn_packets_in\":%llu,\"ecn_packets_out\":%llu,"
        "\"close_no_error\":%llu,\"close_application\":%llu,"
        "\"close_transport_error\":%llu,\"close_tls_alert\":%llu,\"close_idle_timeout\":%llu,"
        "\"close_handshake_timeout\":%llu,\"close_stateless_reset\":%llu,"
        "\"close_unreachable\":%llu}",
        (unsigned long long)st->connections, (unsigned long long)st->handshakes,
        (unsigned long long)st->handshake_time_us, (unsigned long long)st->resumed_handshakes,
        (unsigned long long)st->early_data_accepted, (unsigned long long)st->early_data_rejected,
        (unsigned long long)st->key_updates, (unsigned long long)st->failed_handshakes,
        (unsigned long long)st->accepted_initials, (unsigned long long)st->rejected_initials,
        (unsigned long long)st->retries_sent, (unsigned long long)st->version_negotiations,
        (unsigned long long)st->stateless_resets, (unsigned long long)st->invalid_cid_packets,
        (unsigned long long)st->handed_off, (unsigned long long)st->udp_drops,
        (unsigned long long)st->packets_in, (unsigned long long)st->packets_out,
        (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
        (unsigned long long)st->gso_batches, (unsigned long long)st->ecn_packets_in,
        (unsigned long long)st->ecn_packets_out, (unsigned long long)st->close_no_error,
        (unsigned long long)st->close_application, (unsigned long long)st->close_transport_error,
        (unsigned long long)st->close_tls_alert, (unsigned long long)st->close_idle_timeout,
        (unsigned long long)st->close_handshake_timeout,
        (unsigned long long)st->close_stateless_reset, (unsigned long long)st->close_unreachable);
    if (n < 0) {
        if (size) {
            buf[0] = '\0';
        }
        return 0;
    }
    return (size_t)n < size ? (size_t)n : (size ? size - 1 : 0);
}

int tp__quic_endpoint_new_cid(tp_quic_endpoint_t *ep, ngtcp2_cid *cid, uint8_t *token) {
    cid->datalen = TP_QUIC_CID_LEN;
    int rc = tp__quic_cid_make(cid->data, ep->s.server_id, (uint8_t)ep->worker);
    if (rc == 0 && token) {
        rc = tp__quic_cid_reset_token(token, ep->secret, cid->data, cid->datalen);
    }
    return rc;
}

/* ---- the flush list and the blocked list ---- */

void tp__quic_endpoint_schedule(tp_quic_endpoint_t *ep, tp_quic_conn_t *c) {
    if (c->on_flush_list) {
        return;
    }
    c->on_flush_list = true;
    c->flush_prev = NULL;
    c->flush_next = ep->flush_head;
    if (ep->flush_head) {
        ep->flush_head->flush_prev = c;
    }
    ep->flush_head = c;
    if (!ep->in_recv && !ep->idle_active && !ep->closing) {
        ep->idle_active = true;
        uv_idle_start(&ep->idle, idle_cb);
    }
}

void tp__quic_endpoint_unschedule(tp_quic_endpoint_t *ep, tp_quic_conn_t *c) {
    if (!c->on_flush_list) {
        return;
    }
    if (c->flush_prev) {
        c->flush_prev->flush_next = c->flush_next;
    } else {
        ep->flush_head = c->flush_next;
    }
    if (c->flush_next) {
        c->flush_next->flush_prev = c->flush_prev;
    }
    c->on_flush_list = false;
    c->flush_prev = c->flush_next = NULL;
}

void tp__quic_endpoint_block(tp_quic_endpoint_t *ep, tp_quic_conn_t *c) {
    if (c->on_blocked_list) {
        return;
    }
    c->on_blocked_list = true;
    c->blocked_next = ep->blocked_head;
    ep->blocked_head = c;
}

void tp__quic_endpoint_unblock_all(tp_quic_endpoint_t *ep) {
    while (ep->blocked_head) {
        tp_quic_conn_t *c = ep->blocked_head;
        ep->blocked_head = c->blocked_next;
        c->on_blocked_list = false;
        c->blocked_next = NULL;
        tp__quic_endpoint_schedule(ep, c);
    }
}

static void unblock_one(tp_quic_endpoint_t *ep, tp_quic_conn_t *c) {
    for (tp_quic_conn_t **p = &ep->blocked_head; *p; p = &(*p)->blocked_next) {
        if (*p == c) {
            *p = c->blocked_next;
            c->on_blocked_list = false;
            c->blocked_next = NULL;
            return;
        }
    }
}

void tp__quic_endpoint_forget(tp_quic_endpoint_t *ep, tp_quic_conn_t *c) {
    tp__quic_endpoint_unschedule(ep, c);
    unblock_one(ep, c);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        ep->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    ep->stats.connections--;
}

/* Writes (and calls on_wake for) the connections on the flush list: the ones there when it
 * starts, so an app that wakes itself from on_wake waits for the next round. */
void tp__quic_endpoint_run_flush_list(tp_quic_endpoint_t *ep) {
    size_t n = 0;
    for (tp_quic_conn_t *c = ep->flush_head; c; c = c->flush_next) {
        n++;
    }
    while (n-- > 0 && ep->flush_head) {
        tp_quic_conn_t *c = ep->flush_head;
        tp__quic_endpoint_unschedule(ep, c);
        tp__quic_conn_flush(c);
    }
}

static void idle_cb(uv_idle_t *h) {
    tp_quic_endpoint_t *ep = h->data;
    tp__quic_endpoint_run_flush_list(ep);
    if (ep->closing) {
        return; /* tp_quic_endpoint_close() (from a callback above) took the idle handle over */
    }
    if (!ep->flush_head) {
        ep->idle_active = false;
        uv_idle_stop(&ep->idle);
    }
}

void tp__quic_endpoint_flush_tx(tp_quic_endpoint_t *ep, bool force) {
    if (ep->in_recv && !force) {
        return;
    }
    if (tp__quic_udp_flush(&ep->udp, ep) != 0) {
        if (!(ep->udp.poll_events & UV_WRITABLE) && !ep->closing) {
            ep->udp.poll_events |= UV_WRITABLE;
            uv_poll_start(&ep->udp.poll, ep->udp.poll_events, poll_cb);
        }
        return;
    }
    if (ep->blocked_head) {
        tp__quic_endpoint_unblock_all(ep);
    }
}

/* ---- receive ---- */

static void on_readable(tp_quic_endpoint_t *ep) {
    for (int i = 0; i < MAX_RECV_BATCHES; i++) {
        ep->in_recv++;
        int n = tp__quic_udp_recv_batch(&ep->udp, ep);
        ep->in_recv--;
        if (n < 0) {
            /* A pending socket error (ICMP on a client socket): read the error queue. */
            tp__quic_udp_read_errors(&ep->udp, ep);
            continue;
        }
        /* Every connection the batch touched writes once (ACKs and replies coalesce), before the
         * next batch is read: the peer gets its answers while we read on, rather than all of
         * them after the last batch (which turned a loaded endpoint into a ping-pong of bursts). */
        tp__quic_endpoint_run_flush_list(ep);
        tp__quic_endpoint_flush_tx(ep, false);
        if (n < TP_QUIC_RX_BATCH || ep->closing) {
            break;
        }
    }
    ep->stats.udp_drops += ep->udp.rx_dropped;
    ep->udp.rx_dropped = 0;
    if (ep->flush_head && !ep->idle_active && !ep->closing) {
        ep->idle_active = true;
        uv_idle_start(&ep->idle, idle_cb);
    }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    tp_quic_endpoint_t *ep = h->data;
    if (ep->closing) {
        return;
    }
    if (status < 0) {
        /* libuv reports socket errors this way (POLLERR), and has stopped the handle by then;
         * the error queue says which peer. Poll again, or nothing more is received. */
        tp__quic_udp_read_errors(&ep->udp, ep);
        if (ep->closing) {
            return; /* an on_close above closed the endpoint */
        }
        uv_poll_start(&ep->udp.poll, ep->udp.poll_events, poll_cb);
        events = UV_READABLE;
    }
    if (events & UV_WRITABLE) {
        if (tp__quic_udp_flush(&ep->udp, ep) == 0) {
            ep->udp.poll_events &= ~UV_WRITABLE;
            uv_poll_start(&ep->udp.poll, ep->udp.poll_events, poll_cb);
            tp__quic_endpoint_unblock_all(ep);
        }
    }
    if (events & UV_READABLE) {
        on_readable(ep);
    }
}

static void send_version_negotiation(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx,
                                     const ngtcp2_version_cid *vc) {
    static const uint32_t versions[] = {NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2};
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    uint8_t unused;
    (void)gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
    /* Our answer's DCID is the client's SCID and vice versa. */
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        buf, sizeof(buf), unused, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, versions,
        sizeof(versions) / sizeof(versions[0]));
    if (n > 0) {
        tp__quic_udp_send_now(&ep->udp, ep, buf, (size_t)n, &rx->remote, &rx->local, 0);
        ep->stats.version_negotiations++;
    }
}

static void send_stateless_reset(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx,
                                 const uint8_t *dcid, size_t dcidlen) {
    if (rx->len < MIN_RESET_TRIGGER) {
        return;
    }
    uint16_t server_id;
    if (!tp__quic_cid_parse(dcid, dcidlen, &server_id, NULL) || server_id != ep->s.server_id) {
        /* Not a CID we issue: another server (behind the same address, after a load balancer
         * change) may own the connection; a reset from us would kill it. */
        return;
    }
    uint64_t now = uv_now(ep->loop);
    uint64_t rate = ep->s.stateless_resets_per_sec;
    uint64_t refill = (now - ep->reset_tokens_ms) * rate / 1000;
    if (refill > 0) {
        uint64_t t = ep->reset_tokens + refill;
        ep->reset_tokens = (uint32_t)(t > rate ? rate : t);
        ep->reset_tokens_ms = now;
    }
    if (ep->reset_tokens == 0) {
        return; /* over the rate: an attacker cannot turn us into a reflector */
    }
    ep->reset_tokens--;
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (tp__quic_cid_reset_token(token, ep->secret, dcid, dcidlen) != 0) {
        return;
    }
    /* One byte smaller than the trigger (RFC 9000 10.3.3), so two endpoints cannot loop. */
    size_t total = rx->len - 1;
    if (total > NGTCP2_MAX_UDP_PAYLOAD_SIZE) {
        total = NGTCP2_MAX_UDP_PAYLOAD_SIZE;
    }
    /* ngtcp2 writes the random bytes (the first of them becomes the first byte) and the token. */
    size_t randlen = total - NGTCP2_STATELESS_RESET_TOKENLEN;
    uint8_t rnd[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen) != 0) {
        return;
    }
    ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
    if (n > 0) {
        tp__quic_udp_send_now(&ep->udp, ep, buf, (size_t)n, &rx->remote, &rx->local, 0);
        ep->stats.stateless_resets++;
    }
}

/* A stateless CONNECTION_CLOSE for an Initial we refuse (bad token, too many connections). */
static void refuse_initial(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx, const ngtcp2_pkt_hd *hd,
                           uint64_t code) {
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(buf, sizeof(buf), hd->version, &hd->scid,
                                                          &hd->dcid, code, NULL, 0);
    ep->stats.rejected_initials++;
    /* Smaller than the Initial that caused it (>= 1200 bytes): no amplification. */
    if (n > 0 && (size_t)n <= rx->len) {
        tp__quic_udp_send_now(&ep->udp, ep, buf, (size_t)n, &rx->remote, &rx->local, 0);
    }
}

static void send_retry(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx, const ngtcp2_pkt_hd *hd) {
    ngtcp2_cid scid;
    if (tp__quic_endpoint_new_cid(ep, &scid, NULL) != 0) {
        return;
    }
    uint8_t token[TP_QUIC_TOKEN_MAX];
    ssize_t tlen = tp__quic_token_retry_mint(token, ep->secret, hd->version, &rx->remote, &scid,
                                             &hd->dcid, tp__quic_now());
    if (tlen < 0) {
        return;
    }
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof(buf), hd->version, &hd->scid, &scid,
                                               &hd->dcid, token, (size_t)tlen);
    if (n > 0 && (size_t)n <= rx->len) {
        tp__quic_udp_send_now(&ep->udp, ep, buf, (size_t)n, &rx->remote, &rx->local, 0);
        ep->stats.retries_sent++;
    }
}

static bool wants_retry(const tp_quic_endpoint_t *ep) {
    switch (ep->s.retry) {
    case TP_QUIC_RETRY_ALWAYS: return true;
    case TP_QUIC_RETRY_UNDER_LOAD: return ep->handshakes_open > ep->s.retry_threshold;
    default: return false;
    }
}

static void accept_initial(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx) {
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, rx->data, rx->len) != 0) {
        /* Too short for an Initial, or a Handshake/0-RTT packet of a connection we lost. */
        ep->stats.invalid_cid_packets++;
        return;
    }
    if (hd.type == NGTCP2_PKT_0RTT) {
        /* 0-RTT without its connection (its Initial was lost, reordered or answered with a
         * Retry): the client sends it again. */
        ep->stats.rejected_initials++;
        return;
    }
    if (ep->closing || ep->refusing || ep->stats.connections >= ep->s.max_connections) {
        refuse_initial(ep, rx, &hd, NGTCP2_CONNECTION_REFUSED);
        return;
    }
    uint64_t now = tp__quic_now();
    ngtcp2_cid odcid = hd.dcid;
    const ngtcp2_cid *retry_scid = NULL;
    bool token_ok = false;
    if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
        if (tp__quic_token_retry_verify(&odcid, hd.token, hd.tokenlen, ep->secret, hd.version,
                                        &rx->remote, &hd.dcid, TP_QUIC_RETRY_TOKEN_TTL_MS,
                                        now) != 0) {
            /* RFC 9000 8.1.2: a bad Retry token ends the attempt with INVALID_TOKEN. */
            refuse_initial(ep, rx, &hd, NGTCP2_INVALID_TOKEN);
            return;
        }
        retry_scid = &hd.dcid;
        token_ok = true;
    } else if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR) {
        /* A stale or foreign NEW_TOKEN token is not an error: the client just gets a Retry. */
        token_ok = tp__quic_token_regular_verify(hd.token, hd.tokenlen, ep->secret, &rx->remote,
                                                 TP_QUIC_REGULAR_TOKEN_TTL_MS, now) == 0;
    }
    if (!token_ok && wants_retry(ep)) {
        send_retry(ep, rx, &hd);
        return;
    }
    tp_quic_conn_t *c;
    if (tp__quic_conn_accept(ep, rx, &hd, &odcid, retry_scid, token_ok, &c) != 0) {
        ep->stats.rejected_initials++;
        return;
    }
    ep->stats.accepted_initials++;
    tp__quic_conn_on_packet(c, rx);
}

/* Hands the packet to the worker its DCID names, if that is another member of our group. True
 * when the packet is dealt with (queued, or dropped and counted). */
static bool maybe_handoff(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx, const uint8_t *dcid,
                          size_t dcidlen, bool long_header) {
    uint8_t worker;
    uint16_t server_id;
    if (!ep->group || !tp__quic_cid_parse(dcid, dcidlen, &server_id, &worker) ||
        server_id != ep->s.server_id || worker == ep->worker) {
        return false;
    }
    int rc = tp__quic_group_handoff(ep->group, worker, rx);
    if (rc == TP_ERR_NOTFOUND && long_header) {
        /* A client picks its first DCID at random, and one may look like ours and name a
         * worker we do not have: that Initial is ours to accept. Dropping it would drop every
         * retransmission too (same DCID), and the client could never connect. */
        return false;
    }
    if (rc == 0) {
        ep->stats.handed_off++;
    } else {
        ep->stats.udp_drops++; /* the other worker's queue is full, or it does not exist */
    }
    return true;
}

void tp__quic_endpoint_on_packet(tp_quic_endpoint_t *ep, const tp_quic_rx_t *rx) {
    ep->stats.packets_in++;
    ep->stats.bytes_in += rx->len;
    if (rx->ecn) {
        ep->stats.ecn_packets_in++;
    }
    if (rx->len == 0 || ep->closing) {
        return;
    }
    if (!(rx->data[0] & 0x80)) {
        /* Short header: the fast path. Our CIDs all have one length, so the DCID is at 1..16. */
        if (rx->len < 1 + TP_QUIC_CID_LEN) {
            ep->stats.invalid_cid_packets++;
            return;
        }
        const uint8_t *dcid = rx->data + 1;
        tp_quic_conn_t *c = tp__quic_router_lookup(&ep->router, dcid, TP_QUIC_CID_LEN);
        if (c) {
            tp__quic_conn_on_packet(c, rx);
            return;
        }
        if (maybe_handoff(ep, rx, dcid, TP_QUIC_CID_LEN, false)) {
            return;
        }
        ep->stats.invalid_cid_packets++;
        send_stateless_reset(ep, rx, dcid, TP_QUIC_CID_LEN);
        return;
    }
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, rx->data, rx->len, TP_QUIC_CID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        if (ep->server) {
            send_version_negotiation(ep, rx, &vc);
        }
        return;
    }
    if (rv != 0 || vc.dcidlen > NGTCP2_MAX_CIDLEN) {
        ep->stats.invalid_cid_packets++;
        return;
    }
    tp_quic_conn_t *c = tp__quic_router_lookup(&ep->router, vc.dcid, vc.dcidlen);
    if (c) {
        tp__quic_conn_on_packet(c, rx);
        return;
    }
    if (maybe_handoff(ep, rx, vc.dcid, vc.dcidlen, true)) {
        return;
    }
    if (!ep->server) {
        ep->stats.invalid_cid_packets++;
        return;
    }
    accept_initial(ep, rx);
}

void tp__quic_endpoint_on_unreachable(tp_quic_endpoint_t *ep, const tp_addr_t *remote) {
    tp_quic_conn_t *next;
    for (tp_quic_conn_t *c = ep->conns; c; c = next) {
        next = c->next;
        if (!tp__quic_conn_awaiting_first_packet(c)) {
            continue; /* a connection that works ignores ICMP: it may be forged */
        }
        tp_addr_t peer;
        tp__quic_addr_from_sa(&peer,
                              (const struct sockaddr *)ngtcp2_conn_get_path(c->q)->remote.addr);
        if (tp_addr_eq(&peer, remote)) {
            tp__quic_conn_abort(c, TP_ERR_REFUSED, false, "port unreachable (ICMP)");
        }
    }
}

/* ---- close ---- */

void tp__quic_endpoint_handle_closed(uv_handle_t *h) {
    tp_quic_endpoint_t *ep = h->data;
    if (--ep->handles_open > 0) {
        return;
    }
    void (*cb)(void *) = ep->close_cb;
    void *arg = ep->close_arg;
    if (ep->group) {
        tp__quic_group_member_closed(ep);
    }
    ep_free_mem(ep);
    if (cb) {
        cb(arg);
    }
}

/* The second half of tp_quic_endpoint_close(), on the loop's next step: no runtime entry is
 * running then, so every connection can be freed. */
static void close_step_cb(uv_idle_t *h) {
    tp_quic_endpoint_t *ep = h->data;
    tp_quic_conn_t *next;
    for (tp_quic_conn_t *c = ep->conns; c; c = next) {
        next = c->next;
        (void)tp__quic_conn_reap(c);
    }
    if (ep->conns) {
        return; /* one is still inside a call (a nested loop run): try on the next step */
    }
    uv_idle_stop(&ep->idle);
    ep->idle_active = false;
    uv_close((uv_handle_t *)&ep->idle, tp__quic_endpoint_handle_closed);
}

void tp_quic_endpoint_refuse_new(tp_quic_endpoint_t *ep) { ep->refusing = true; }

void tp_quic_endpoint_close(tp_quic_endpoint_t *ep, void (*cb)(void *arg), void *arg) {
    if (ep->closing) {
        return; /* closed already (e.g. again from an on_close the first call ran) */
    }
    /* Before any on_close runs: tp_quic_connect() from one fails with TP_ERR_STATE instead of
     * adding connections to the list being closed. */
    ep->closing = true;
    ep->close_cb = cb;
    ep->close_arg = arg;
    /* Say goodbye to every peer while the socket still works. Aborting frees nothing, so the
     * list stays intact while the app's on_close callbacks run. */
    tp_quic_conn_t *next;
    for (tp_quic_conn_t *c = ep->conns; c; c = next) {
        next = c->next;
        tp__quic_conn_abort(c, TP_ERR_CLOSED, true, "endpoint closed");
    }
    tp__quic_endpoint_flush_tx(ep, true);
    if (ep->handoff) {
        tp__quic_handoff_stop(ep);
    }
    uv_poll_stop(&ep->udp.poll);
    uv_close((uv_handle_t *)&ep->udp.poll, tp__quic_endpoint_handle_closed);
    /* The caller may be inside a callback of one of these connections: free them on the next
     * step (the idle handle, restarted with the close step). */
    uv_idle_stop(&ep->idle);
    ep->idle_active = true;
    uv_idle_start(&ep->idle, close_step_cb);
}
