/* http-lab: exercises the HTTP request and response hooks (for the integration tests). */
#include <stdlib.h>
#include <string.h>
#include <turnpike.h>
#include <uv.h>

/*
 * By path:
 *   /hello           answered directly: 200 JSON {"hello":"<host>"} with X-Lab: direct
 *   /slow            answered directly 50 ms later (a pending decision)
 *   /forbidden       blocked: 451 with Proxy-Status error http_request_denied
 *   /old/<rest>      forwarded as /new/<rest>
 *   anything else    forwarded
 * Every forwarded request gets X-Lab: 1 and loses X-Secret; X-Upstream: <name> picks the
 * upstream group. Every upstream response gets X-Lab-Status: <status>; a 404 becomes a 410.
 *
 * Body hooks, by request header:
 *   X-Body: buffer     the request body is held whole (BUFFER), then let go at its end
 *   X-Body: watermark  each chunk is held (WATERMARK) and resumed 5 ms later
 *   X-Body: upper      each chunk is upper-cased (a same-length rewrite)
 *   X-Body: grow       each chunk gets a '!' appended (the length changes: sent chunked)
 *   X-Body: block      the body is refused at its end (422)
 *   X-Resp: upper      the response body is upper-cased
 *   X-Resp: append     "[lab]" is appended to the response body (sent chunked)
 *   X-Resp: watermark  each response chunk is held and resumed 5 ms later
 */

enum { M_NONE = 0, M_BUFFER, M_WATERMARK, M_UPPER, M_GROW, M_BLOCK, M_APPEND };

typedef struct resume resume_t;

typedef struct {
    int body, resp;      /* M_* for the request and the response body */
    resume_t *resume[2]; /* a watermark resume in flight, per body */
} req_ext_t;

struct resume {
    uv_timer_t timer;
    tp_request_t *req; /* NULL once the request is gone */
    bool response;
    req_ext_t *ext;
};

static int mode_of(tp_str_t v) {
    static const char *const names[] = {"",     "buffer", "watermark", "upper",
                                        "grow", "block",  "append",    NULL};
    for (int i = 1; v.ptr && names[i]; i++)
        if (strlen(names[i]) == v.len && memcmp(names[i], v.ptr, v.len) == 0)
            return i;
    return M_NONE;
}

static void resume_free(uv_handle_t *h) { free(h->data); }

static void resume_fire(uv_timer_t *t) {
    resume_t *r = t->data;
    if (r->req) {
        r->ext->resume[r->response] = NULL;
        tp_body_resume(r->req, r->response);
    }
    uv_close((uv_handle_t *)&r->timer, resume_free);
}

/* A request going away with a resume in flight: the timer must not touch it. */
static void req_ext_free(void *ext) {
    req_ext_t *x = ext;
    for (int i = 0; i < 2; i++)
        if (x->resume[i])
            x->resume[i]->req = NULL;
}

static tp_body_decision_t body_hook(tp_request_t *req, tp_body_t *body, int mode, bool response) {
    size_t len;
    const uint8_t *p = tp_body_data(body, &len);
    switch (mode) {
    case M_BUFFER: return tp_body_is_end(body) ? tp_body_continue() : tp_body_buffer();
    case M_WATERMARK: {
        if (tp_body_is_end(body))
            return tp_body_continue();
        req_ext_t *x = TP_EXT(req_ext_t, req);
        resume_t *r = calloc(1, sizeof(*r));
        if (!r)
            return tp_body_continue();
        r->req = req;
        r->response = response;
        r->ext = x;
        x->resume[response] = r;
        uv_timer_init(tp_conn_loop(tp_request_conn(req)), &r->timer);
        r->timer.data = r;
        uv_timer_start(&r->timer, resume_fire, 5, 0);
        return tp_body_watermark();
    }
    case M_UPPER:
    case M_GROW: {
        char *q = malloc(len + 1);
        if (!q)
            return tp_body_block(500, "proxy_internal_error");
        for (size_t i = 0; i < len; i++)
            q[i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
        q[len] = '!';
        tp_body_rewrite(body, q, len + (mode == M_GROW && len ? 1 : 0));
        free(q);
        return tp_body_continue();
    }
    case M_BLOCK:
        return tp_body_is_end(body) ? tp_body_block(422, "http_request_denied") : tp_body_buffer();
    case M_APPEND:
        if (tp_body_is_end(body))
            tp_body_rewrite(body, "[lab]", 5);
        return tp_body_continue();
    default: return tp_body_continue();
    }
}

static tp_body_decision_t on_request_body(void *self, tp_request_t *req, tp_body_t *body) {
    return body_hook(req, body, TP_EXT(req_ext_t, req)->body, false);
}

static tp_body_decision_t on_response_body(void *self, tp_request_t *req, tp_body_t *body) {
    return body_hook(req, body, TP_EXT(req_ext_t, req)->resp, true);
}

static bool path_is(tp_str_t path, const char *p) {
    size_t n = strlen(p);
    return path.len >= n && memcmp(path.ptr, p, n) == 0 && (path.len == n || path.ptr[n] == '?');
}

typedef struct {
    uv_timer_t timer;
    tp_pending_t *pending;
    tp_decision_t decision; /* built in the hook, while the request surely lives */
} later_t;

static void later_free(uv_handle_t *h) { free(h->data); }

static void later_fire(uv_timer_t *t) {
    later_t *l = t->data;
    /* The request may be gone by now (the client left): the completion is then ignored. */
    tp_pending_complete(l->pending, l->decision);
    uv_close((uv_handle_t *)&l->timer, later_free);
}

static tp_decision_t on_request(void *self, tp_request_t *req) {
    tp_str_t path = tp_request_path(req);
    if (path_is(path, "/hello")) {
        char body[320];
        tp_str_t host = tp_request_host(req);
        int n = snprintf(body, sizeof(body), "{\"hello\":\"%.*s\"}", (int)host.len, host.ptr);
        tp_response_add_header(tp_request_response(req), "X-Lab", "direct");
        return tp_respond(req, 200, "application/json", body, (size_t)n);
    }
    if (path_is(path, "/slow")) {
        later_t *l = calloc(1, sizeof(*l));
        tp_pending_t *p = l ? tp_pending_new(req, 2000) : NULL;
        if (!p) {
            free(l);
            return tp_respond(req, 200, "text/plain", "slow\n", 5);
        }
        tp_decision_t d = tp_respond(req, 200, "text/plain", "slow\n", 5);
        if (d.verdict != TP_VERDICT_RESPOND) {
            tp_pending_complete(p, d);
            free(l);
            return tp_pending();
        }
        l->pending = p;
        l->decision = d;
        uv_timer_init(tp_conn_loop(tp_request_conn(req)), &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, later_fire, 50, 0);
        return tp_pending();
    }
    if (path_is(path, "/forbidden")) {
        tp_decision_t d = tp_block(451, "http_request_denied");
        d.details = "blocked by http-lab";
        return d;
    }
    if (path.len >= 5 && memcmp(path.ptr, "/old/", 5) == 0) {
        char np[1024];
        snprintf(np, sizeof(np), "/new/%.*s", (int)(path.len - 5), path.ptr + 5);
        tp_request_set_path(req, np);
    }
    req_ext_t *x = TP_EXT(req_ext_t, req);
    x->body = mode_of(tp_request_header(req, "x-body"));
    x->resp = mode_of(tp_request_header(req, "x-resp"));
    if (x->body == M_GROW)
        tp_request_body_will_change(req);
    tp_request_set_header(req, "X-Lab", "1");
    tp_request_remove_header(req, "X-Secret");
    tp_str_t up = tp_request_header(req, "x-upstream");
    if (up.ptr && up.len < 64) {
        char name[64];
        memcpy(name, up.ptr, up.len);
        name[up.len] = '\0';
        if (tp_request_set_upstream(req, name) != 0)
            return tp_respond(req, 400, "text/plain", "no such upstream\n", 17);
    }
    return tp_allow();
}

static void on_response(void *self, tp_request_t *req, tp_response_t *resp) {
    char v[8];
    snprintf(v, sizeof(v), "%u", tp_response_status(resp));
    tp_response_set_header(resp, "X-Lab-Status", v);
    if (tp_response_status(resp) == 404)
        tp_response_set_status(resp, 410);
    if (TP_EXT(req_ext_t, req)->resp == M_APPEND)
        tp_response_body_will_change(resp);
}

static const tp_app_t app = {
    .name = "http-lab",
    .version = "1.0",
    .description = "exercises handle_request and handle_response (for tests)",
    .ext = {[TP_EXT_REQUEST] = {sizeof(req_ext_t), NULL, req_ext_free}},
    .hooks = {.http_request = {.handle_request = on_request,
                               .handle_response = on_response,
                               .handle_request_body = on_request_body,
                               .handle_response_body = on_response_body}},
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
