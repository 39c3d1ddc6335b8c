/* http-firewall: refuses uploads whose body, as sent or URL-decoded (form data), holds a blocked
 * pattern; scanned chunk by chunk as it streams, never buffered whole. */
#include <stdlib.h>
#include <string.h>
#include <turnpike.h>

#define TAIL ((size_t)256) /* the longest pattern, so a match across two chunks is still seen */

typedef struct {
    tp_str_list_t patterns;
} settings_t;

typedef struct {
    char raw[2 * TAIL], dec[2 * TAIL]; /* the last bytes seen, as sent and URL-decoded */
    size_t nraw, ndec;
    int pct;     /* a %XX in progress across chunks: -1 none, else the digits so far ... */
    int pct_val; /* ... and their value */
} req_ext_t;

static const tp_setting_t settings_schema[] = {
    TP_SETTING_STRINGS(settings_t, patterns, NULL, "byte strings no request body may contain"),
    TP_SETTING_END,
};

static void req_init(void *ext, void *owner) { ((req_ext_t *)ext)->pct = -1; }

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Appends c to a window (which keeps at least the last TAIL bytes) and says whether a pattern
 * ends there. */
static bool push(const settings_t *s, char *win, size_t *n, char c) {
    if (*n == 2 * TAIL) { /* shift half the window at once: amortized O(1) per byte */
        memmove(win, win + TAIL, TAIL);
        *n = TAIL;
    }
    win[(*n)++] = c;
    for (size_t i = 0; i < s->patterns.n; i++) {
        const char *pat = s->patterns.items[i];
        size_t pl = strlen(pat);
        if (pl && pl <= *n && pat[pl - 1] == c && memcmp(win + *n - pl, pat, pl) == 0)
            return true;
    }
    return false;
}

static tp_body_decision_t on_body(void *self, tp_request_t *req, tp_body_t *body) {
    const settings_t *s = tp_app_settings(req);
    req_ext_t *x = TP_EXT(req_ext_t, req);
    size_t len;
    const uint8_t *p = tp_body_data(body, &len);
    bool hit = false;
    for (size_t i = 0; i < len && !hit; i++) {
        char c = (char)p[i];
        hit = push(s, x->raw, &x->nraw, c);
        if (x->pct >= 0) { /* inside %XX */
            int v = hexval(c);
            x->pct_val = x->pct_val * 16 + (v < 0 ? 0 : v);
            if (v < 0 || ++x->pct == 2) {
                hit = hit || push(s, x->dec, &x->ndec, v < 0 ? c : (char)x->pct_val);
                x->pct = -1;
            }
        } else if (c == '%') {
            x->pct = 0;
            x->pct_val = 0;
        } else {
            hit = hit || push(s, x->dec, &x->ndec, c == '+' ? ' ' : c);
        }
    }
    if (!hit)
        return tp_body_continue();
    tp_body_decision_t d = tp_body_block(403, "http_request_denied");
    d.details = "the body holds a blocked pattern";
    return d;
}

static void on_response(void *self, tp_request_t *req, tp_response_t *resp) {
    tp_response_set_header(resp, "X-Firewall", "scanned");
}

static const tp_app_t app = {
    .name = "http-firewall",
    .version = "1.0",
    .description = "refuses request bodies that hold a blocked pattern, scanned as they stream",
    .settings = settings_schema,
    .settings_size = sizeof(settings_t),
    .ext = {[TP_EXT_REQUEST] = {sizeof(req_ext_t), req_init, NULL}},
    .hooks = {.http_request = {.handle_request_body = on_body, .handle_response = on_response}},
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
