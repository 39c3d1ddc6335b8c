/*
 * hook-lab: a Turnpike app for tests, and a reference for app authors, that uses the parts of the
 * hook model the examples leave out:
 *
 *   - global settings (`app:`) and per-endpoint settings (`endpoints[].app:`), read in hooks with
 *     tp_app_settings(ctx) and tp_endpoint_settings(ctx);
 *   - decisions that complete later: a deciding hook calls tp_pending_new(), starts its own work
 *     (here a uv_timer_t on the connection's worker loop) and returns tp_pending(); the timer's
 *     callback calls tp_pending_complete(), which returns TP_ERR_CLOSED when the flow died in the
 *     meantime (the client went away, or the decision timed out);
 *   - typed extensions of all three kinds (endpoint, ingress connection, request) with init and
 *     free callbacks;
 *   - egress redirects (tp_redirect), the CONNECT response hook, and the close hook's statistics.
 *
 * Everything is chosen by settings, so that tests can pick behaviours:
 *
 *   app:
 *     banner: lab                   # shown in the X-Hook-Lab response header
 *   endpoints:
 *     - name: proxy
 *       type: http_proxy
 *       listen: [127.0.0.1:0]
 *       app:
 *         ingress_delay: 300ms      # decide the connection 300 ms after accept,
 *         ingress_verdict: allow    # and let it in (block: close it; never: let it time out)
 *         connect_verdict: block    # refuse CONNECT requests,
 *         connect_block_status: 451 # with 451
 *         egress_redirect: 127.0.0.1:7  # connect there, whatever the client asked for
 *
 * The app writes its own JSON lines to stderr, next to Turnpike's: {"msg":"app","event":...}.
 * Events: "pending" (a decision was deferred), "completed" (tp_pending_complete applied it),
 * "late_completion" (it returned TP_ERR_CLOSED: the flow was gone), "redirect", "close" (the close
 * hook's statistics and the hooks the app saw) and "stop" (counters, once, at exit).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <turnpike.h>
#include <uv.h>

/* ---- Settings ------------------------------------------------------------------------------ */

/* The global `app:` section. */
typedef struct {
    char *banner;
} settings_t;

/* What a deciding hook answers once its delay is over. */
enum { VERDICT_ALLOW = 0, VERDICT_BLOCK, VERDICT_NEVER };
static const char *const verdict_names[] = {"allow", "block", "never", NULL};

/* Each endpoint's own `app:` section (defaults apply when an endpoint has none). */
typedef struct {
    uint64_t ingress_delay; /* ms; 0 = decide inside the hook */
    int ingress_verdict;
    uint64_t connect_delay;
    int connect_verdict;
    int64_t connect_block_status;
    uint64_t egress_delay;
    int egress_verdict;
    tp_addr_list_t egress_redirect; /* empty, or one ip:port */
    uint64_t pending_timeout;       /* passed to tp_pending_new(); 0 = timeouts.decision */
    char *dns_name;                 /* a name dns_resolve_override answers itself */
    tp_addr_list_t dns_answer;      /* ... with these addresses (port 0: the requested one) */
    bool dns_refuse;                /* ... or refuses (502 dns_error) */
    bool reverse_ips;               /* handle_upstream_ips reverses the address order */
    bool connect_override;          /* tcp_connect_override connects the socket itself */
    char *tls_block_sni;            /* handle_tls_client_hello blocks this server name */
} endpoint_settings_t;

static const tp_setting_t settings_schema[] = {
    TP_SETTING_STRING(settings_t, banner, "hook-lab",
                      "text for the X-Hook-Lab header of CONNECT responses (printable ASCII)"),
    TP_SETTING_END,
};

static const tp_setting_t endpoint_settings_schema[] = {
    TP_SETTING_DURATION(endpoint_settings_t, ingress_delay, "0", 0, TP_SECONDS(600),
                        "ingress.handle_connection decides this long after accept (0 = at once)"),
    TP_SETTING_ENUM(endpoint_settings_t, ingress_verdict, "allow", verdict_names,
                    "block closes the connection; never lets the decision time out"),
    TP_SETTING_DURATION(endpoint_settings_t, connect_delay, "0", 0, TP_SECONDS(600),
                        "the CONNECT request hook decides this long after the head (0 = at once)"),
    TP_SETTING_ENUM(endpoint_settings_t, connect_verdict, "allow", verdict_names,
                    "block answers connect_block_status; never lets the decision time out"),
    TP_SETTING_INT(endpoint_settings_t, connect_block_status, "403", 400, 599,
                   "status of a blocked CONNECT"),
    TP_SETTING_DURATION(endpoint_settings_t, egress_delay, "0", 0, TP_SECONDS(600),
                        "egress.handle_connection decides this long after it runs (0 = at once)"),
    TP_SETTING_ENUM(endpoint_settings_t, egress_verdict, "allow", verdict_names,
                    "block answers 403 destination_ip_prohibited; never lets it time out"),
    TP_SETTING_ADDRS(endpoint_settings_t, egress_redirect, NULL,
                     "ip:port to connect to instead of the requested upstream (first entry)"),
    TP_SETTING_DURATION(endpoint_settings_t, pending_timeout, "0", 0, TP_SECONDS(600),
                        "timeout given to tp_pending_new() (0 = the endpoint's timeouts.decision)"),
    TP_SETTING_STRING(endpoint_settings_t, dns_name, NULL,
                      "dns_resolve_override answers this name itself (others resolve as usual)"),
    TP_SETTING_ADDRS(endpoint_settings_t, dns_answer, NULL,
                     "the addresses dns_resolve_override gives for dns_name (ip:0)"),
    TP_SETTING_BOOL(endpoint_settings_t, dns_refuse, "false",
                    "dns_resolve_override refuses dns_name instead (502 dns_error)"),
    TP_SETTING_BOOL(endpoint_settings_t, reverse_ips, "false",
                    "handle_upstream_ips reverses the order of the resolved addresses"),
    TP_SETTING_BOOL(endpoint_settings_t, connect_override, "false",
                    "tcp_connect_override connects the socket itself (a blocking connect: only "
                    "for loopback tests)"),
    TP_SETTING_STRING(endpoint_settings_t, tls_block_sni, NULL,
                      "TLS endpoints: handle_tls_client_hello blocks this server name"),
    TP_SETTING_END,
};

/* A `never` decision must still be completed once (to free its handle): this long after the hook
 * when its delay is 0. By then the flow has been refused by its decision timeout. */
#define NEVER_RELEASE_MS 10000

/* ---- Process-wide counters (workers run in parallel threads: atomics) --------------------- */

static struct {
    atomic_ullong ext_init[TP_EXT__COUNT];
    atomic_ullong ext_free[TP_EXT__COUNT];
    atomic_ullong pending_started;   /* handles made by tp_pending_new() */
    atomic_ullong pending_completed; /* tp_pending_complete() calls */
    atomic_ullong late_completions;  /* ... that returned TP_ERR_CLOSED */
} lab;

/* ---- Logging ------------------------------------------------------------------------------- */

/*
 * Writes {"msg":"app",<fields>} and a newline to stderr. The line is formatted first and written
 * with a single fprintf and a flush, so lines from different workers never interleave with each
 * other or with Turnpike's own log lines.
 */
static void app_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void app_log(const char *fmt, ...) {
    char fields[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    fprintf(stderr, "{\"msg\":\"app\",%s}\n", fields);
    fflush(stderr);
}

/* `s` as the inside of a JSON string (quotes, backslashes and control characters escaped). */
static const char *json_esc(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return out;
}

/* ---- Extensions ---------------------------------------------------------------------------- */

/*
 * Per endpoint. Turnpike keeps one per endpoint *per worker*, so it is only ever touched from its
 * worker's loop and needs no lock. Freed after the worker stopped.
 */
typedef struct {
    const char *name;
    uint64_t connections; /* accepted on this worker, ever */
    uint64_t open;        /* whose extension is alive */
} endpoint_ext_t;

/* Hook names, the same as Turnpike's trace lines (runtime.trace_hooks) use. */
#define H_INGRESS          "ingress.handle_connection"
#define H_CONNECT_REQUEST  "http.handle_proxy_connect_request"
#define H_EGRESS           "egress.handle_connection"
#define H_ESTABLISHED      "egress.handle_connection_established"
#define H_CONNECT_RESPONSE "http.handle_proxy_connect_response"
#define H_CLOSE            "ingress.handle_connection_close"
#define H_CLIENT_HELLO     "ingress.handle_tls_client_hello"

/* Per ingress connection. */
typedef struct {
    uint64_t id;
    endpoint_ext_t *ep;
    uint64_t seq;      /* this was the ep->connections-th connection */
    uint64_t requests; /* requests seen (their request extensions were made) */
    char upstream[TP_ADDR_STRLEN];
    const char *hooks[24]; /* the hooks that ran for it, in order */
    unsigned nhooks;
} conn_ext_t;

/* Per request (a CONNECT). */
typedef struct {
    uint64_t seq; /* the n-th request of its connection */
} request_ext_t;

static void endpoint_ext_init(void *ext, void *owner) {
    endpoint_ext_t *e = ext;
    e->name = tp_endpoint_name(owner); /* owner: the tp_endpoint_t */
    atomic_fetch_add(&lab.ext_init[TP_EXT_ENDPOINT], 1);
}

static void endpoint_ext_free(void *ext) { atomic_fetch_add(&lab.ext_free[TP_EXT_ENDPOINT], 1); }

/* Runs at accept, before ingress.handle_connection. */
static void conn_ext_init(void *ext, void *owner) {
    conn_ext_t *c = ext;
    tp_conn_t *conn = owner;
    c->id = tp_conn_id(conn);
    c->ep = TP_EXT(endpoint_ext_t, tp_conn_endpoint(conn));
    c->seq = ++c->ep->connections;
    c->ep->open++;
    atomic_fetch_add(&lab.ext_init[TP_EXT_INGRESS_CONNECTION], 1);
}

/* Runs after ingress.handle_connection_close. Only the extension itself is at hand here. */
static void conn_ext_free(void *ext) {
    conn_ext_t *c = ext;
    c->ep->open--;
    atomic_fetch_add(&lab.ext_free[TP_EXT_INGRESS_CONNECTION], 1);
}

/* Runs when a request head is complete, before its first hook. */
static void request_ext_init(void *ext, void *owner) {
    request_ext_t *r = ext;
    r->seq = ++TP_EXT(conn_ext_t, tp_request_conn(owner))->requests;
    atomic_fetch_add(&lab.ext_init[TP_EXT_REQUEST], 1);
}

static void request_ext_free(void *ext) { atomic_fetch_add(&lab.ext_free[TP_EXT_REQUEST], 1); }

static void saw(conn_ext_t *c, const char *hook) {
    if (c->nhooks < sizeof(c->hooks) / sizeof(c->hooks[0]))
        c->hooks[c->nhooks++] = hook;
}

/* ---- Decisions that complete later --------------------------------------------------------- */

/*
 * The app's half of a pending decision. It holds the handle and copies of what it logs; never a
 * pointer to the conn, request or egress context (nor their extensions), which Turnpike may free
 * before the timer fires. The worker's loop keeps running until the timer is closed, even while
 * Turnpike shuts down.
 */
typedef struct {
    uv_timer_t timer;
    tp_pending_t *pending;
    tp_decision_t decision; /* what to complete with */
    const char *hook;
    uint64_t conn_id;
} delayed_t;

static void delayed_free(uv_handle_t *h) { free(h->data); }

static void delayed_fire(uv_timer_t *t) {
    delayed_t *dl = t->data;
    /* Exactly once per handle, even when the flow is gone: then it only frees the handle. */
    int rc = tp_pending_complete(dl->pending, dl->decision);
    atomic_fetch_add(&lab.pending_completed, 1);
    if (rc == TP_ERR_CLOSED) {
        atomic_fetch_add(&lab.late_completions, 1);
        app_log("\"event\":\"late_completion\",\"hook\":\"%s\",\"conn\":%" PRIu64 ",\"rc\":%d",
                dl->hook, dl->conn_id, rc);
    } else {
        app_log("\"event\":\"completed\",\"hook\":\"%s\",\"conn\":%" PRIu64 ",\"rc\":%d,"
                "\"verdict\":\"%s\"",
                dl->hook, dl->conn_id, rc,
                dl->decision.verdict == TP_VERDICT_BLOCK      ? "block"
                : dl->decision.verdict == TP_VERDICT_REDIRECT ? "redirect"
                                                              : "allow");
    }
    /* A handle is freed in its close callback, never right away. */
    uv_close((uv_handle_t *)&dl->timer, delayed_free);
}

/*
 * Defers `d` by `delay_ms`: `dl` was allocated by the hook, `p` is what tp_pending_new() returned
 * for the hook's context. Returns what the hook should return: tp_pending(), or `d` itself when
 * there is no handle (out of memory): deciding at once is always allowed.
 */
static tp_decision_t defer(delayed_t *dl, tp_pending_t *p, uv_loop_t *loop, uint64_t delay_ms,
                           tp_decision_t d, const char *hook, const conn_ext_t *c) {
    if (!p) {
        free(dl);
        return d;
    }
    atomic_fetch_add(&lab.pending_started, 1);
    dl->pending = p;
    dl->decision = d;
    dl->hook = hook;
    dl->conn_id = c->id;
    uv_timer_init(loop, &dl->timer);
    dl->timer.data = dl;
    uv_timer_start(&dl->timer, delayed_fire, delay_ms, 0);
    app_log("\"event\":\"pending\",\"hook\":\"%s\",\"conn\":%" PRIu64 ",\"delay_ms\":%" PRIu64,
            hook, c->id, delay_ms);
    return tp_pending();
}

/* How long to wait for a setting pair; `never` waits past any sensible decision timeout. */
static uint64_t delay_of(uint64_t delay, int verdict) {
    return verdict == VERDICT_NEVER && delay == 0 ? NEVER_RELEASE_MS : delay;
}

/* True when the hook must answer later rather than return its decision. */
static bool deferred(uint64_t delay, int verdict) { return delay > 0 || verdict == VERDICT_NEVER; }

/* ---- Hooks --------------------------------------------------------------------------------- */

static tp_decision_t on_ingress(void *self, tp_conn_t *conn) {
    const endpoint_settings_t *es = tp_endpoint_settings(conn);
    conn_ext_t *c = TP_EXT(conn_ext_t, conn);
    saw(c, H_INGRESS);
    /* On L4 flows a block has no status: the connection is closed. */
    tp_decision_t d = es->ingress_verdict == VERDICT_ALLOW ? tp_allow() : tp_block(0, NULL);
    if (!deferred(es->ingress_delay, es->ingress_verdict))
        return d;
    delayed_t *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return d;
    return defer(dl, tp_pending_new(conn, es->pending_timeout), tp_conn_loop(conn),
                 delay_of(es->ingress_delay, es->ingress_verdict), d, H_INGRESS, c);
}

/* The SNI peek: logs what the ClientHello offers, blocks the name the settings name. */
static tp_decision_t on_client_hello(void *self, tp_conn_t *conn,
                                     const tp_tls_client_hello_t *hello) {
    const endpoint_settings_t *es = tp_endpoint_settings(conn);
    saw(TP_EXT(conn_ext_t, conn), H_CLIENT_HELLO);
    char sni[512], alpn[512] = "", one[300], esc[600];
    size_t n = 0;
    snprintf(one, sizeof(one), "%.*s", (int)hello->sni.len, hello->sni.ptr ? hello->sni.ptr : "");
    json_esc(sni, sizeof(sni), one);
    for (size_t i = 0; i < hello->nalpn && n < sizeof(alpn) - 64; i++) {
        snprintf(one, sizeof(one), "%.*s", (int)hello->alpn[i].len, hello->alpn[i].ptr);
        n += (size_t)snprintf(alpn + n, sizeof(alpn) - n, "%s\"%s\"", i ? "," : "",
                              json_esc(esc, sizeof(esc), one));
    }
    app_log("\"event\":\"client_hello\",\"conn\":%" PRIu64
            ",\"sni\":\"%s\",\"alpn\":[%s],\"max_version\":%u",
            tp_conn_id(conn), sni, alpn, (unsigned)hello->max_version);
    if (es->tls_block_sni && tp_str_eq(hello->sni, tp_str(es->tls_block_sni)))
        return tp_block(0, NULL);
    return tp_allow();
}

/* The TLS session as the close hook sees it. */
static void log_tls(tp_conn_t *conn) {
    const tp_tls_info_t *t = tp_conn_tls(conn);
    if (!t)
        return;
    char subject[600], issuer[600], sans[1200], verify[600];
    app_log("\"event\":\"tls\",\"conn\":%" PRIu64
            ",\"version\":\"%s\",\"cipher\":\"%s\",\"alpn\":\"%s\",\"sni\":\"%s\","
            "\"resumed\":%s,\"peer\":%d,\"peer_verified\":%s,\"peer_verify\":\"%s\","
            "\"peer_subject\":\"%s\",\"peer_issuer\":\"%s\",\"peer_serial\":\"%s\","
            "\"peer_sans\":\"%s\",\"peer_sha256\":\"%s\"",
            tp_conn_id(conn), t->version, t->cipher, t->alpn, t->sni, t->resumed ? "true" : "false",
            (int)t->peer, t->peer_verified ? "true" : "false",
            json_esc(verify, sizeof(verify), t->peer_verify),
            json_esc(subject, sizeof(subject), t->peer_subject),
            json_esc(issuer, sizeof(issuer), t->peer_issuer), t->peer_serial,
            json_esc(sans, sizeof(sans), t->peer_sans), t->peer_sha256);
}

static void on_close(void *self, tp_conn_t *conn, const tp_conn_stats_t *st) {
    log_tls(conn);
    conn_ext_t *c = TP_EXT(conn_ext_t, conn);
    saw(c, H_CLOSE);
    char hooks[1024] = "";
    size_t n = 0;
    for (unsigned i = 0; i < c->nhooks && n < sizeof(hooks) - 64; i++)
        n += (size_t)snprintf(hooks + n, sizeof(hooks) - n, "%s\"%s\"", i ? "," : "", c->hooks[i]);
    char name[256];
    app_log("\"event\":\"close\",\"conn\":%" PRIu64 ",\"endpoint\":\"%s\",\"reason\":\"%s\","
            "\"bytes_from_client\":%" PRIu64 ",\"bytes_to_client\":%" PRIu64
            ",\"bytes_from_upstream\":%" PRIu64 ",\"bytes_to_upstream\":%" PRIu64
            ",\"requests\":%" PRIu64 ",\"duration_us\":%" PRIu64 ",\"endpoint_conns\":%" PRIu64
            ",\"endpoint_open\":%" PRIu64 ",\"hooks\":[%s]",
            c->id, json_esc(name, sizeof(name), c->ep->name), tp_close_reason_name(st->reason),
            st->bytes_from_client, st->bytes_to_client, st->bytes_from_upstream,
            st->bytes_to_upstream, st->requests, st->duration_us, c->seq, c->ep->open, hooks);
}

static tp_decision_t on_connect_request(void *self, tp_request_t *req) {
    const endpoint_settings_t *es = tp_endpoint_settings(req);
    conn_ext_t *c = TP_EXT(conn_ext_t, tp_request_conn(req));
    saw(c, H_CONNECT_REQUEST);
    tp_decision_t d = es->connect_verdict == VERDICT_ALLOW
                          ? tp_allow()
                          : tp_block((uint16_t)es->connect_block_status, "http_request_denied");
    if (!deferred(es->connect_delay, es->connect_verdict))
        return d;
    delayed_t *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return d;
    return defer(dl, tp_pending_new(req, es->pending_timeout), tp_conn_loop(tp_request_conn(req)),
                 delay_of(es->connect_delay, es->connect_verdict), d, H_CONNECT_REQUEST, c);
}

/* Every CONNECT answer (2xx or error) gets a header built from all three extensions. */
static void on_connect_response(void *self, tp_request_t *req, tp_response_t *resp) {
    const settings_t *s = tp_app_settings(req);
    conn_ext_t *c = TP_EXT(conn_ext_t, tp_request_conn(req));
    const request_ext_t *r = TP_EXT(request_ext_t, req);
    saw(c, H_CONNECT_RESPONSE);
    char value[512];
    snprintf(value, sizeof(value),
             "conn=%" PRIu64 " endpoint-conns=%" PRIu64 " request=%" PRIu64 " status=%u"
             " upstream=%s banner=%s",
             c->id, c->ep->connections, r->seq, tp_response_status(resp),
             c->upstream[0] ? c->upstream : "-", s->banner ? s->banner : "");
    int rc = tp_response_add_header(resp, "X-Hook-Lab", value);
    if (rc != 0)
        app_log("\"event\":\"add_header_failed\",\"conn\":%" PRIu64 ",\"rc\":%d", c->id, rc);
}

static tp_decision_t on_egress(void *self, tp_egress_t *eg, const tp_addr_t *upstream) {
    const endpoint_settings_t *es = tp_endpoint_settings(eg);
    conn_ext_t *c = TP_EXT(conn_ext_t, tp_egress_conn(eg));
    saw(c, H_EGRESS);
    tp_decision_t d = tp_allow();
    if (es->egress_verdict != VERDICT_ALLOW) {
        d = tp_egress_block(403, "destination_ip_prohibited");
    } else if (es->egress_redirect.n > 0) {
        /* The destination policy still judges the new address (allow_destinations). */
        d = tp_redirect(&es->egress_redirect.items[0]);
        char from[TP_ADDR_STRLEN], to[TP_ADDR_STRLEN];
        app_log("\"event\":\"redirect\",\"conn\":%" PRIu64 ",\"from\":\"%s\",\"to\":\"%s\"", c->id,
                tp_addr_format(upstream, from, sizeof(from)),
                tp_addr_format(&d.addr, to, sizeof(to)));
    }
    if (!deferred(es->egress_delay, es->egress_verdict))
        return d;
    delayed_t *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return d;
    return defer(dl, tp_pending_new(eg, es->pending_timeout), tp_conn_loop(tp_egress_conn(eg)),
                 delay_of(es->egress_delay, es->egress_verdict), d, H_EGRESS, c);
}

/* Answers dns_name from the settings, at once (the pending path is covered by the other hooks). */
static tp_decision_t on_dns(void *self, tp_egress_t *eg, tp_str_t host) {
    const endpoint_settings_t *es = tp_endpoint_settings(eg);
    if (!es->dns_name || !tp_str_eq(host, tp_str(es->dns_name)))
        return tp_allow();
    app_log("\"event\":\"dns_override\",\"host\":\"%s\",\"answers\":%zu", es->dns_name,
            es->dns_answer.n);
    if (es->dns_refuse) {
        tp_decision_t d = tp_block(502, "dns_error");
        d.details = "refused by hook-lab";
        return d;
    }
    tp_egress_set_addresses(eg, es->dns_answer.items, es->dns_answer.n);
    return tp_allow();
}

/* The extension of a cached DNS answer: how many upstream set-ups used it. */
typedef struct {
    uint64_t uses;
} dns_item_ext_t;

static void on_upstream_ips(void *self, tp_egress_t *eg, tp_addr_t *addrs, size_t *n, size_t cap) {
    const endpoint_settings_t *es = tp_endpoint_settings(eg);
    dns_item_ext_t *item = tp_egress_dns_item_ext(eg);
    if (item) {
        tp_str_t host = tp_egress_host(eg);
        app_log("\"event\":\"dns_item\",\"host\":\"%.*s\",\"uses\":%" PRIu64, (int)host.len,
                host.ptr, ++item->uses);
    }
    if (!es->reverse_ips)
        return;
    for (size_t i = 0; i < *n / 2; i++) {
        tp_addr_t t = addrs[i];
        addrs[i] = addrs[*n - 1 - i];
        addrs[*n - 1 - i] = t;
    }
}

/* Logs what the PROXY header said, so tests can check addresses and TLVs. */
static tp_decision_t on_proxy_header(void *self, tp_conn_t *conn, const tp_proxy_header_t *h) {
    char src[TP_ADDR_STRLEN] = "", uid[300] = "", auth[300] = "";
    if (h->family == TP_PP_FAMILY_INET || h->family == TP_PP_FAMILY_INET6)
        tp_addr_format(&h->src, src, sizeof(src));
    for (size_t i = 0; i < h->unique_id.len && i < 128; i++)
        snprintf(uid + 2 * i, 3, "%02x", (unsigned char)h->unique_id.ptr[i]);
    snprintf(auth, sizeof(auth), "%.*s", (int)h->authority.len, h->authority.ptr);
    char esc[400];
    app_log("\"event\":\"proxy_header\",\"version\":%u,\"command\":%d,\"src\":\"%s\","
            "\"unique_id\":\"%s\",\"authority\":\"%s\",\"crc32c\":%s,\"tlvs\":%zu",
            h->version, (int)h->command, src, uid, json_esc(esc, sizeof(esc), auth),
            h->crc32c_verified ? "true" : "false", h->ntlvs);
    return tp_allow();
}

/* Connects the socket itself. A blocking connect is fine for a loopback test, never in real apps.
 */
static int on_connect_override(void *self, tp_egress_t *eg, const tp_addr_t *addr) {
    const endpoint_settings_t *es = tp_endpoint_settings(eg);
    if (!es->connect_override)
        return -1;
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -2;
    if (connect(fd, &addr->u.sa, tp_addr_len(addr)) != 0) {
        close(fd);
        return -2;
    }
    char ab[TP_ADDR_STRLEN];
    app_log("\"event\":\"connect_override\",\"addr\":\"%s\"", tp_addr_format(addr, ab, sizeof(ab)));
    return fd;
}

static void on_established(void *self, tp_egress_t *eg, const tp_addr_t *upstream) {
    conn_ext_t *c = TP_EXT(conn_ext_t, tp_egress_conn(eg));
    saw(c, H_ESTABLISHED);
    tp_addr_format(upstream, c->upstream, sizeof(c->upstream));
}

/* ---- Start and stop ------------------------------------------------------------------------ */

/* Once, after the configuration is loaded: checks what the schema cannot. */
static int start(const void *settings, tp_hooks_t *hooks) {
    const settings_t *s = settings;
    for (const unsigned char *p = (const unsigned char *)s->banner; p && *p; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            fprintf(stderr, "hook-lab: app.banner must be printable ASCII (it goes in a header)\n");
            return TP_ERR_CONFIG;
        }
    }
    /* `self` reaches every hook of a table; hook-lab keeps no state there, so it only points at
     * the counters to show where an app would put it. */
    hooks->ingress.self = hooks->egress.self = hooks->http_request.self = &lab;
    hooks->proxy_protocol.self = &lab;
    return 0;
}

/* Once, after every worker stopped and every context and extension was freed. */
static void stop(void) {
    app_log("\"event\":\"stop\",\"endpoint_ext_init\":%llu,\"endpoint_ext_free\":%llu,"
            "\"conn_ext_init\":%llu,\"conn_ext_free\":%llu,\"request_ext_init\":%llu,"
            "\"request_ext_free\":%llu,\"pending_started\":%llu,\"pending_completed\":%llu,"
            "\"late_completions\":%llu",
            atomic_load(&lab.ext_init[TP_EXT_ENDPOINT]),
            atomic_load(&lab.ext_free[TP_EXT_ENDPOINT]),
            atomic_load(&lab.ext_init[TP_EXT_INGRESS_CONNECTION]),
            atomic_load(&lab.ext_free[TP_EXT_INGRESS_CONNECTION]),
            atomic_load(&lab.ext_init[TP_EXT_REQUEST]), atomic_load(&lab.ext_free[TP_EXT_REQUEST]),
            atomic_load(&lab.pending_started), atomic_load(&lab.pending_completed),
            atomic_load(&lab.late_completions));
}

static const tp_app_t app = {
    .name = "hook-lab",
    .version = "1.0",
    .description = "exercises pending decisions, extensions, redirects and settings (for tests)",
    .settings = settings_schema,
    .settings_size = sizeof(settings_t),
    .endpoint_settings = endpoint_settings_schema,
    .endpoint_settings_size = sizeof(endpoint_settings_t),
    .ext =
        {
            [TP_EXT_ENDPOINT] = {sizeof(endpoint_ext_t), endpoint_ext_init, endpoint_ext_free},
            [TP_EXT_INGRESS_CONNECTION] = {sizeof(conn_ext_t), conn_ext_init, conn_ext_free},
            [TP_EXT_REQUEST] = {sizeof(request_ext_t), request_ext_init, request_ext_free},
            [TP_EXT_DNS_ITEM] = TP_EXT_SPEC(dns_item_ext_t),
        },
    .hooks =
        {
            .proxy_protocol = {.handle_connection = on_proxy_header},
            .ingress = {.handle_connection = on_ingress,
                        .handle_connection_close = on_close,
                        .handle_tls_client_hello = on_client_hello},
            .egress = {.handle_connection = on_egress,
                       .handle_connection_established = on_established,
                       .dns_resolve_override = on_dns,
                       .handle_upstream_ips = on_upstream_ips,
                       .tcp_connect_override = on_connect_override},
            .http_request = {.handle_proxy_connect_request = on_connect_request,
                             .handle_proxy_connect_response = on_connect_response},
        },
    .start = start,
    .stop = stop,
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
