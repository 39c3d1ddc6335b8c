/* test_config.c: unit tests of the YAML loader, its error reports and the default-config printer */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/model.h"

/* ---- A test app whose schemas use every setting type ---------------------------------------- */

typedef struct item_cfg {
    char *id;
    int64_t weight;
    tp_str_list_t tags;
} item_cfg_t;

typedef struct sub_cfg {
    bool on;
    uint64_t ttl;
} sub_cfg_t;

typedef struct app_cfg {
    bool flag;
    int64_t count;
    int64_t threads;
    uint64_t wait;
    uint64_t buf;
    char *label;
    char *secret;
    char *unset;
    int mode;
    tp_cidr_set_t *nets;
    tp_addr_list_t binds;
    char *origin;
    tp_str_list_t names;
    sub_cfg_t sub;
    tp_list_t items;
    tp_list_t none;
} app_cfg_t;

typedef struct app_ep_cfg {
    uint64_t quota;
    char *tag;
} app_ep_cfg_t;

static const char *const modes[] = {"fast", "safe", "weird-one", NULL};

static const tp_setting_t item_settings[] = {
    TP_SETTING_STRING(item_cfg_t, id, NULL, "item id"),
    TP_SETTING_INT(item_cfg_t, weight, "1", 1, 100, "weight"),
    TP_SETTING_STRINGS(item_cfg_t, tags, NULL, "tags"),
    TP_SETTING_END,
};
static const tp_schema_t item_schema = {
    .name = "item",
    .size = sizeof(item_cfg_t),
    .settings = item_settings,
    .example = "id: first\nweight: 3\ntags: [a, 'b c', \"x,y\"]\n",
};

static const tp_setting_t sub_settings[] = {
    TP_SETTING_BOOL(sub_cfg_t, on, "true", "on"),
    TP_SETTING_DURATION(sub_cfg_t, ttl, "90s", 0, 0, "ttl"),
    TP_SETTING_END,
};
static const tp_schema_t sub_schema = {
    .name = "sub", .size = sizeof(sub_cfg_t), .settings = sub_settings};

static const tp_setting_t app_settings[] = {
    TP_SETTING_BOOL(app_cfg_t, flag, "true", "a flag"),
    TP_SETTING_INT(app_cfg_t, count, "-5", -10, 10, "a count"),
    TP_SETTING_INT_AUTO(app_cfg_t, threads, "auto", 1, 64, "threads"),
    TP_SETTING_DURATION(app_cfg_t, wait, "1500ms", TP_MS(1), TP_SECONDS(60), "a wait"),
    TP_SETTING_SIZE(app_cfg_t, buf, "1MiB", TP_KIB(1), TP_GIB(1), "a buffer"),
    TP_SETTING_STRING(app_cfg_t, label, "hello: world #1", "a label that needs quoting"),
    TP_SETTING_SECRET_STRING(app_cfg_t, secret, "s3cr\"et\\", "a secret"),
    TP_SETTING_STRING(app_cfg_t, unset, NULL, "nothing by default"),
    TP_SETTING_ENUM(app_cfg_t, mode, "weird-one", modes, "a mode"),
    TP_SETTING_CIDRS(app_cfg_t, nets, "10.0.0.0/8 fd00::/8, 192.0.2.1", "networks"),
    TP_SETTING_ADDRS(app_cfg_t, binds, "[::1]:8080, 127.0.0.1:0", "binds"),
    TP_SETTING_HOSTPORT(app_cfg_t, origin, "example.com:443", "origin"),
    TP_SETTING_STRINGS(app_cfg_t, names, "h2, http/1.1", "names"),
    TP_SETTING_SECTION(app_cfg_t, sub, &sub_schema, "a sub-section"),
    TP_SETTING_LIST(app_cfg_t, items, &item_schema, "items"),
    TP_SETTING_LIST(app_cfg_t, none, &sub_schema, "a list without example"),
    TP_SETTING_END,
};
static const tp_schema_t app_schema = {
    .name = "app", .size = sizeof(app_cfg_t), .settings = app_settings};

static const tp_setting_t app_ep_settings[] = {
    TP_SETTING_SIZE(app_ep_cfg_t, quota, "10MiB", 0, 0, "quota"),
    TP_SETTING_STRING(app_ep_cfg_t, tag, "edge", "tag"),
    TP_SETTING_END,
};

/* ---- Helpers ------------------------------------------------------------------------------ */

static int load(const tp_schema_t *root, void *out, const char *yaml, tp_config_error_t *err) {
    return tp__config_load(root, out, "test.yaml", yaml, strlen(yaml), err);
}

static bool all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static tp_addr_t addr(const char *text) {
    tp_addr_t a;
    assert_int_equal(tp_addr_parse(&a, text, true), 0);
    return a;
}

static char *print_to_string(const tp_schema_t *root, const char *header) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(tp__config_print_default(f, root, header), 0);
    fclose(f);
    return text;
}

/* Field-by-field equality of two loaded structs of the same schema. */
static void assert_same(const tp_schema_t *sc, const void *a, const void *b) {
    static const char *const probes[] = {"10.1.2.3", "11.0.0.1", "192.0.2.1", "192.0.2.2",
                                         "fd12::1",  "fe80::1",  "::1",       "127.0.0.1"};
    for (const tp_setting_t *s = sc->settings; s->type != TP_SETTING_T_END; s++) {
        const char *fa = (const char *)a + s->offset, *fb = (const char *)b + s->offset;
        switch (s->type) {
        case TP_SETTING_T_BOOL: assert_int_equal(*(const bool *)fa, *(const bool *)fb); break;
        case TP_SETTING_T_INT: assert_int_equal(*(const int64_t *)fa, *(const int64_t *)fb); break;
        case TP_SETTING_T_DURATION:
        case TP_SETTING_T_SIZE:
            assert_int_equal(*(const uint64_t *)fa, *(const uint64_t *)fb);
            break;
        case TP_SETTING_T_ENUM: assert_int_equal(*(const int *)fa, *(const int *)fb); break;
        case TP_SETTING_T_STRING:
        case TP_SETTING_T_HOSTPORT: {
            const char *x = *(char *const *)fa, *y = *(char *const *)fb;
            if (!x || !y)
                assert_ptr_equal(x, y);
            else
                assert_string_equal(x, y);
            break;
        }
        case TP_SETTING_T_CIDRS: {
            const tp_cidr_set_t *x = *(tp_cidr_set_t *const *)fa, *y = *(tp_cidr_set_t *const *)fb;
            assert_non_null(x);
            assert_non_null(y);
            assert_int_equal(tp_cidr_set_count(x), tp_cidr_set_count(y));
            for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
                tp_addr_t p = addr(probes[i]);
                assert_int_equal(tp_cidr_set_contains(x, &p), tp_cidr_set_contains(y, &p));
            }
            break;
        }
        case TP_SETTING_T_ADDRS: {
            const tp_addr_list_t *x = (const void *)fa, *y = (const void *)fb;
            assert_int_equal(x->n, y->n);
            for (size_t i = 0; i < x->n; i++)
                assert_true(tp_addr_eq(&x->items[i], &y->items[i]));
            break;
        }
        case TP_SETTING_T_STRINGS: {
            const tp_str_list_t *x = (const void *)fa, *y = (const void *)fb;
            assert_int_equal(x->n, y->n);
            for (size_t i = 0; i < x->n; i++)
                assert_string_equal(x->items[i], y->items[i]);
            break;
        }
        case TP_SETTING_T_SECTION:
            if (s->flags & TP_SETTING_INDIRECT) {
                const void *x = *(void *const *)fa, *y = *(void *const *)fb;
                assert_non_null(x);
                assert_non_null(y);
                assert_same(s->sub, x, y);
            } else {
                assert_same(s->sub, fa, fb);
            }
            break;
        case TP_SETTING_T_LIST: {
            const tp_list_t *x = (const void *)fa, *y = (const void *)fb;
            assert_int_equal(x->n, y->n);
            for (size_t i = 0; i < x->n; i++)
                assert_same(s->sub, (const char *)x->items + i * s->sub->size,
                            (const char *)y->items + i * s->sub->size);
            break;
        }
        default: fail_msg("unexpected type %d", (int)s->type);
        }
    }
}

/* ---- Units -------------------------------------------------------------------------------- */

static void test_durations(void **state) {
    uint64_t ms;
    assert_int_equal(tp__parse_duration("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(tp__parse_duration("5s", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(tp__parse_duration("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(tp__parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(tp__parse_duration("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(tp__parse_duration("7", &ms), 0);
    assert_int_equal(ms, 7000);
    assert_int_equal(tp__parse_duration("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(tp__parse_duration("", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("s", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("5 s", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("-5s", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("1.5s", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("5S", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("5sec", &ms), TP_ERR_INVAL);
    assert_int_equal(tp__parse_duration("18446744073709551615ms", &ms), 0);
    assert_int_equal(tp__parse_duration("18446744073709551616ms", &ms), TP_ERR_RANGE);
    assert_int_equal(tp__parse_duration("18446744073709551615d", &ms), TP_ERR_RANGE);
}

static void test_sizes(void **state) {
    uint64_t b;
    assert_int_equal(tp__parse_size("512", &b), 0);
    assert_int_equal(b, 512);
    assert_int_equal(tp__parse_size("64KiB", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(tp__parse_size("64K", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(tp__parse_size("64KB", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(tp__parse_size("16MiB", &b), 0);
    assert_int_equal(b, 16u << 20);
    assert_int_equal(tp__parse_size("1GiB", &b), 0);
    assert_int_equal(b, 1u << 30);
    assert_int_equal(tp__parse_size("2TiB", &b), 0);
    assert_int_equal(b, (uint64_t)2 << 40);
    assert_int_equal(tp__parse_size("100B", &b), 0);
    assert_int_equal(b, 100);
    assert_int_equal(tp__parse_size("KiB", &b), TP_ERR_INVAL);
    assert_int_equal(tp__parse_size("1.5MiB", &b), TP_ERR_INVAL);
    assert_int_equal(tp__parse_size("10 MiB", &b), TP_ERR_INVAL);
    assert_int_equal(tp__parse_size("10PiB", &b), TP_ERR_INVAL);
    assert_int_equal(tp__parse_size("-1", &b), TP_ERR_INVAL);
    assert_int_equal(tp__parse_size("17179869184GiB", &b), TP_ERR_RANGE);
}

/* ---- Loading the framework schema ---------------------------------------------------------- */

static void test_defaults(void **state) {
    tp_config_schemas_t s;
    tp_config_t cfg;
    tp_config_error_t err;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    assert_int_equal(load(&s.root, &cfg, "", &err), 0);
    assert_int_equal(cfg.runtime.workers, 0);
    assert_int_equal(cfg.runtime.drain_timeout, 30000);
    assert_int_equal(cfg.runtime.log_level, TP_LOG_INFO);
    assert_false(cfg.runtime.trace_hooks);
    assert_int_equal(cfg.runtime.buffer_size, 65536);
    assert_int_equal(cfg.runtime.busy_poll_us, 50);
    assert_int_equal(cfg.endpoints.n, 0);
    assert_non_null(cfg.app); /* indirect sections exist even when the app declares nothing */
    tp__config_free(&s.root, &cfg);
    assert_true(all_zero(&cfg, sizeof(cfg)));

    /* Comments only, "---" alone and "~" are empty documents too. */
    const char *empties[] = {"# nothing\n", "---\n", "~\n", "{}\n", "runtime:\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        assert_int_equal(load(&s.root, &cfg, empties[i], &err), 0);
        assert_int_equal(cfg.runtime.buffer_size, 65536);
        tp__config_free(&s.root, &cfg);
    }

    /* An endpoint with only the required keys gets every default. */
    assert_int_equal(load(&s.root, &cfg,
                          "endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n",
                          &err),
                     0);
    assert_int_equal(cfg.endpoints.n, 1);
    tp_endpoint_cfg_t *ep = TP_LIST_AT(tp_endpoint_cfg_t, cfg.endpoints, 0);
    assert_string_equal(ep->name, "a");
    assert_int_equal(ep->type, TP_ONRAMP_TCP);
    assert_null(ep->upstream);
    assert_non_null(ep->allow_destinations);
    assert_int_equal(tp_cidr_set_count(ep->allow_destinations), 0);
    assert_int_equal(ep->backlog, 511);
    assert_int_equal(ep->high_watermark, 256 * 1024);
    assert_int_equal(ep->timeouts.connect, 10000);
    assert_int_equal(ep->timeouts.idle, 60000);
    assert_int_equal(ep->timeouts.header_read, 10000);
    assert_int_equal(ep->timeouts.decision, 5000);
    assert_int_equal(ep->limits.max_header_bytes, 16384);
    assert_int_equal(ep->limits.max_headers, 100);
    assert_int_equal(ep->limits.max_connections, 0);
    assert_non_null(ep->app);
    tp__config_free(&s.root, &cfg);
}

static void test_full_config(void **state) {
    tp_config_schemas_t s;
    tp_config_t cfg;
    tp_config_error_t err;
    char msg[1024];
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    const char *yaml = "runtime:\n"
                       "  workers: 4\n"
                       "  drain_timeout: 2m\n"
                       "  log_level: debug\n"
                       "  trace_hooks: true\n"
                       "  buffer_size: 16KiB\n"
                       "  busy_poll_us: 0\n"
                       "endpoints:\n"
                       "  - name: l4\n"
                       "    type: tcp\n"
                       "    listen: [127.0.0.1:9000, '[::1]:9000']\n"
                       "    upstream: backend.internal:8443\n"
                       "    allow_destinations:\n"
                       "      - 10.0.0.0/8\n"
                       "      - fd00::/8\n"
                       "    timeouts: {connect: 250ms, idle: 0}\n"
                       "  - name: fwd\n"
                       "    type: http_proxy\n"
                       "    listen: \"0.0.0.0:0 [::]:3128\"\n"
                       "    limits:\n"
                       "      max_connections: 10000000\n"
                       "app:\n";
    int rc = load(&s.root, &cfg, yaml, &err);
    tp__config_error_format(&err, msg, sizeof(msg));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.runtime.workers, 4);
    assert_int_equal(cfg.runtime.drain_timeout, 120000);
    assert_int_equal(cfg.runtime.log_level, TP_LOG_DEBUG);
    assert_true(cfg.runtime.trace_hooks);
    assert_int_equal(cfg.runtime.buffer_size, 16384);
    assert_int_equal(cfg.runtime.busy_poll_us, 0);
    assert_int_equal(cfg.endpoints.n, 2);
    tp_endpoint_cfg_t *a = TP_LIST_AT(tp_endpoint_cfg_t, cfg.endpoints, 0);
    tp_endpoint_cfg_t *b = TP_LIST_AT(tp_endpoint_cfg_t, cfg.endpoints, 1);
    assert_string_equal(a->upstream, "backend.internal:8443");
    assert_int_equal(a->listen.n, 2);
    tp_addr_t want = addr("[::1]:9000");
    assert_true(tp_addr_eq(&a->listen.items[1], &want));
    tp_addr_t ten = addr("10.9.9.9"), fd = addr("fd00::5"), pub = addr("8.8.8.8");
    assert_true(tp_cidr_set_contains(a->allow_destinations, &ten));
    assert_true(tp_cidr_set_contains(a->allow_destinations, &fd));
    assert_false(tp_cidr_set_contains(a->allow_destinations, &pub));
    assert_int_equal(a->timeouts.connect, 250);
    assert_int_equal(a->timeouts.idle, 0);
    assert_int_equal(a->timeouts.decision, 5000);
    assert_int_equal(b->type, TP_ONRAMP_HTTP_PROXY);
    assert_int_equal(b->listen.n, 2);
    assert_int_equal(tp_addr_port(&b->listen.items[0]), 0);
    assert_int_equal(tp_addr_port(&b->listen.items[1]), 3128);
    assert_int_equal(b->limits.max_connections, 10000000);
    tp__config_free(&s.root, &cfg);
}

/* ---- Errors ------------------------------------------------------------------------------- */

typedef struct bad {
    const char *yaml;
    int line, column;
    const char *key;
    const char *msg; /* a substring of the message */
} bad_t;

static const bad_t bad_configs[] = {
    /* misspelt keys, with the suggestion */
    {"runtime:\n  wrokers: 2\n", 2, 3, "runtime.wrokers",
     "unknown key 'wrokers' (did you mean 'workers'?)"},
    {"endpoints:\n  - name: a\n    type: tcp\n    lisen: [127.0.0.1:1]\n", 4, 5,
     "endpoints[0].lisen", "unknown key 'lisen' (did you mean 'listen'?)"},
    {"runtim:\n  workers: 2\n", 1, 1, "runtim", "did you mean 'runtime'?"},
    {"runtime:\n  zzz: 1\n", 2, 3, "runtime.zzz", "expected one of: workers, drain_timeout"},
    {"app:\n  x: 1\n", 2, 3, "app.x", "this section takes no keys"},
    /* YAML features that are refused */
    {"runtime:\n  workers: 2\n  workers: 3\n", 3, 3, "runtime.workers",
     "duplicate key 'workers' (first at line 2)"},
    {"runtime: &r\n  workers: 2\n", 1, 10, "runtime", "anchors (&r) are not supported"},
    {"runtime:\n  workers: 1\nendpoints: *r\n", 3, 12, "endpoints",
     "aliases (*r) are not supported"},
    {"runtime:\n  workers: !!int 2\n", 2, 12, "runtime.workers",
     "tags ('tag:yaml.org,2002:int') are not supported"},
    {"runtime: {}\n---\nruntime: {}\n", 2, 1, "", "only one YAML document"},
    {"runtime: [\n", 2, 1, "", "invalid YAML"},
    {"runtime:\n  workers: 1\n bad\n", 3, 2, "", "invalid YAML"},
    {"- a\n- b\n", 1, 1, "", "must be a mapping of keys, not a list"},
    /* types, bounds, words */
    {"runtime:\n  workers: 300\n", 2, 12, "runtime.workers", "300 is out of range 0..256"},
    {"runtime:\n  workers: -1\n", 2, 12, "runtime.workers", "-1 is out of range 0..256"},
    {"runtime:\n  workers: many\n", 2, 12, "runtime.workers",
     "expected an integer or 'auto', got 'many'"},
    {"runtime:\n  workers: {a: 1}\n", 2, 12, "runtime.workers",
     "expected an integer or 'auto', got a mapping"},
    {"runtime:\n  log_level: verbose\n", 2, 14, "runtime.log_level",
     "'verbose' is not one of: debug, info, warn, error"},
    {"runtime:\n  log_level: wran\n", 2, 14, "runtime.log_level", "(did you mean 'warn'?)"},
    {"runtime:\n  trace_hooks: yes\n", 2, 16, "runtime.trace_hooks",
     "expected true or false, got 'yes'"},
    {"runtime:\n  trace_hooks:\n", 2, 15, "runtime.trace_hooks",
     "missing value: expected true or false"},
    {"runtime:\n  buffer_size: 1KiB\n", 2, 16, "runtime.buffer_size",
     "1KiB is out of range 4KiB..4MiB"},
    {"runtime:\n  buffer_size: 64 kB\n", 2, 16, "runtime.buffer_size", "expected a size"},
    {"runtime:\n  busy_poll_us: 20000\n", 2, 17, "runtime.busy_poll_us",
     "20000 is out of range 0..10000"},
    {"runtime:\n  drain_timeout: 2h\n", 2, 18, "runtime.drain_timeout", "2h is out of range 0..1h"},
    {"runtime: 5\n", 1, 10, "runtime", "expected a mapping of keys, got '5'"},
    {"endpoints:\n  name: a\n", 2, 3, "endpoints", "expected a list of mappings"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    timeouts:\n      idle: "
     "5 minutes\n",
     6, 13, "endpoints[0].timeouts.idle", "expected a duration such as 250ms"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    timeouts:\n      "
     "connect: 0\n",
     6, 16, "endpoints[0].timeouts.connect", "0 is out of range 1ms..10m"},
    {"endpoints:\n  - name: a\n    type: udp\n", 3, 11, "endpoints[0].type",
     "'udp' is not one of: tcp, http_proxy"},
    /* addresses */
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: [127.0.0.1:1, 1.2.3.4]\n", 4, 27,
     "endpoints[0].listen[1]", "'1.2.3.4' is not a numeric ip:port"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: localhost:80\n", 4, 13,
     "endpoints[0].listen", "'localhost:80' is not a numeric ip:port"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 1.2.3.4:70000\n", 4, 13,
     "endpoints[0].listen", "is not a numeric ip:port"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    allow_destinations: "
     "10.0.0.0/8, 300.1.1.1\n",
     5, 25, "endpoints[0].allow_destinations", "'300.1.1.1' is not an IP prefix"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    allow_destinations: "
     "[10.1.0.0/8]\n",
     5, 26, "endpoints[0].allow_destinations[0]", "host bits"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    upstream: example.com\n",
     5, 15, "endpoints[0].upstream", "the port is missing"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    upstream: "
     "example.com:0\n",
     5, 15, "endpoints[0].upstream", "the port must be a number from 1 to 65535"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    upstream: '::1:80'\n", 5,
     15, "endpoints[0].upstream", "needs brackets"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    upstream: "
     "bad_-.com.:80\n",
     5, 15, "endpoints[0].upstream", "neither a DNS name nor an IP"},
    {"endpoints:\n  - name: a\n    type: tcp\n    listen: 127.0.0.1:1\n    upstream: "
     "10.0.0.300:80\n",
     5, 15, "endpoints[0].upstream", "neither a DNS name nor an IP"},
    /* required keys point at the mapping, checks at the key they name */
    {"endpoints:\n  - type: tcp\n    listen: 1.2.3.4:5\n", 2, 5, "endpoints[0].name",
     "missing required key 'name'"},
    {"endpoints:\n  - name:\n    type: tcp\n", 2, 10, "endpoints[0].name",
     "'name' is required and needs a value"},
    {"endpoints:\n  -\n", 2, 4, "endpoints[0].name", "missing required key 'name'"},
    {"endpoints:\n  - name: a\n    type: tcp\n", 2, 5, "endpoints[0].listen",
     "at least one listen address"},
    {"endpoints:\n  - name: a\n    type: http_proxy\n    listen: 1.2.3.4:5\n    upstream: "
     "a.com:80\n",
     5, 5, "endpoints[0].upstream", "'upstream' is for tcp endpoints"},
    {"endpoints:\n  - {name: a, type: tcp, listen: 1.1.1.1:1}\n  - {name: a, type: tcp, listen: "
     "1.1.1.1:2}\n",
     1, 1, "endpoints", "endpoint name 'a' is used twice"},
    /* bytes that are not text */
    {"runtime:\n  log_level: \"in\\0fo\"\n", 2, 14, "runtime.log_level", "NUL characters"},
};

static void test_errors(void **state) {
    tp_config_schemas_t s;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
        const bad_t *b = &bad_configs[i];
        tp_config_t cfg;
        tp_config_error_t err;
        memset(&cfg, 0xa5, sizeof(cfg));
        int rc = load(&s.root, &cfg, b->yaml, &err);
        if (rc != TP_ERR_CONFIG || err.line != b->line || err.column != b->column ||
            strcmp(err.key, b->key) != 0 || !strstr(err.msg, b->msg))
            fail_msg(
                "case %zu:\n%s\ngot rc %d at %d:%d key '%s': %s\nwant %d:%d key '%s': ...%s...", i,
                b->yaml, rc, err.line, err.column, err.key, err.msg, b->line, b->column, b->key,
                b->msg);
        assert_string_equal(err.file, "test.yaml");
        assert_true(all_zero(&cfg, sizeof(cfg))); /* everything freed and zeroed */
    }
}

static void test_error_format(void **state) {
    tp_config_error_t err = {
        .file = "a.yaml", .line = 3, .column = 7, .key = "runtime.workers", .msg = "bad"};
    char buf[128];
    tp__config_error_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "a.yaml:3:7: runtime.workers: bad");
    err.column = 0;
    tp__config_error_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "a.yaml:3: runtime.workers: bad");
    err.line = 0;
    err.key[0] = '\0';
    tp__config_error_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "a.yaml: bad");
    err.file[0] = '\0';
    tp__config_error_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "bad");
    err = (tp_config_error_t){.file = "a.yaml", .line = 1, .column = 1, .msg = "x"};
    char small[8];
    tp__config_error_format(&err, small, sizeof(small));
    assert_string_equal(small, "a.yaml:");
}

static void test_limits(void **state) {
    tp_config_schemas_t s;
    tp_config_t cfg;
    tp_config_error_t err;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);

    /* Nesting depth. */
    char deep[256] = "runtime:\n  workers: ";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    assert_int_equal(load(&s.root, &cfg, deep, &err), TP_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "nested deeper than 32 levels"));
    assert_int_equal(err.line, 2);
    /* Two mappings, then 30 brackets make 32 levels: the 31st bracket is refused. */
    assert_int_equal(err.column, 12 + 30);
    assert_string_equal(err.key, "runtime.workers[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]["
                                 "0][0][0][0][0][0][0][0][0][0][0][0][0][0]");
    assert_true(all_zero(&cfg, sizeof(cfg)));

    /* Document size. */
    size_t big = ((size_t)4 << 20) + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '#', big);
    assert_int_equal(tp__config_load(&s.root, &cfg, "big", text, big, &err), TP_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "larger than 4 MiB"));
    free(text);

    /* Scalar length. */
    size_t n = 70000;
    text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "runtime:\n  log_level: ");
    memset(text + strlen(text), 'a', n);
    text[22 + n] = '\0';
    assert_int_equal(load(&s.root, &cfg, text, &err), TP_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "value longer than 65536 bytes"));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 14);
    assert_string_equal(err.key, "runtime.log_level");
    free(text);

    /* List length: the 65537th item is refused where it stands. */
    n = 65537;
    text = malloc(2 * n + 64);
    assert_non_null(text);
    size_t o = (size_t)sprintf(text, "runtime:\n  workers: [");
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(text + o, "%s0", i ? "," : "");
    strcpy(text + o, "]\n");
    assert_int_equal(load(&s.root, &cfg, text, &err), TP_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "more than 65536 items in one list"));
    assert_string_equal(err.key, "runtime.workers[65536]");
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 13 + 2 * 65536);
    free(text);

    /* Values in the whole document. */
    text = malloc(5 * 2 * 60000 + 64);
    assert_non_null(text);
    o = (size_t)sprintf(text, "x: [");
    for (int l = 0; l < 5; l++) {
        o += (size_t)sprintf(text + o, "%s[", l ? "," : "");
        for (int i = 0; i < 60000; i++)
            o += (size_t)sprintf(text + o, "%s0", i ? "," : "");
        text[o++] = ']';
    }
    strcpy(text + o, "]\n");
    assert_int_equal(load(&s.root, &cfg, text, &err), TP_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "more than 262144 values"));
    free(text);
}

/* ---- Value forms -------------------------------------------------------------------------- */

static void test_value_forms(void **state) {
    app_cfg_t cfg;
    tp_config_error_t err;
    char msg[1024];

    /* Lists: explicit empty values, scalars with commas and spaces, sequences. */
    int rc =
        load(&app_schema, &cfg, "nets:\nbinds: []\nnames: 'a b,  c ,,d'\nitems: []\nnone:\n", &err);
    tp__config_error_format(&err, msg, sizeof(msg));
    assert_int_equal(rc, 0);
    assert_non_null(cfg.nets);
    assert_int_equal(tp_cidr_set_count(cfg.nets), 0);
    assert_int_equal(cfg.binds.n, 0);
    assert_int_equal(cfg.names.n, 3);
    assert_string_equal(cfg.names.items[0], "a b");
    assert_string_equal(cfg.names.items[1], "c");
    assert_string_equal(cfg.names.items[2], "d");
    assert_int_equal(cfg.items.n, 0);
    tp__config_free(&app_schema, &cfg);

    /* Defaults of every type. */
    assert_int_equal(load(&app_schema, &cfg, "", &err), 0);
    assert_true(cfg.flag);
    assert_int_equal(cfg.count, -5);
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.wait, 1500);
    assert_int_equal(cfg.buf, 1 << 20);
    assert_string_equal(cfg.label, "hello: world #1");
    assert_string_equal(cfg.secret, "s3cr\"et\\");
    assert_null(cfg.unset);
    assert_int_equal(cfg.mode, 2);
    assert_int_equal(tp_cidr_set_count(cfg.nets), 3);
    assert_int_equal(cfg.binds.n, 2);
    assert_int_equal(tp_addr_port(&cfg.binds.items[0]), 8080);
    assert_string_equal(cfg.origin, "example.com:443");
    assert_int_equal(cfg.names.n, 2);
    assert_string_equal(cfg.names.items[1], "http/1.1");
    assert_true(cfg.sub.on);
    assert_int_equal(cfg.sub.ttl, 90000);
    assert_int_equal(cfg.items.n, 0);
    tp__config_free(&app_schema, &cfg);

    /* Strings: any scalar; quoted "" is a string, a plain empty value unsets. */
    assert_int_equal(load(&app_schema, &cfg, "label: ''\nsecret:\nunset: 42\norigin: null\n", &err),
                     0);
    assert_string_equal(cfg.label, "");
    assert_null(cfg.secret);
    assert_string_equal(cfg.unset, "42");
    assert_null(cfg.origin);
    tp__config_free(&app_schema, &cfg);

    /* Quoted values of other types are read by the key's type, too. */
    assert_int_equal(load(&app_schema, &cfg, "flag: 'FALSE'\ncount: \"+7\"\nwait: '2s'\n", &err),
                     0);
    assert_false(cfg.flag);
    assert_int_equal(cfg.count, 7);
    assert_int_equal(cfg.wait, 2000);
    tp__config_free(&app_schema, &cfg);

    /* Nested lists of sections and strings; an item given as a bare "-" takes all defaults. */
    rc = load(&app_schema, &cfg,
              "items:\n  - id: x\n    tags: [p, q]\n  -\n  - weight: 100\n    tags: r\n", &err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.items.n, 3);
    item_cfg_t *it = TP_LIST_AT(item_cfg_t, cfg.items, 0);
    assert_string_equal(it->id, "x");
    assert_int_equal(it->weight, 1);
    assert_int_equal(it->tags.n, 2);
    it = TP_LIST_AT(item_cfg_t, cfg.items, 1);
    assert_null(it->id);
    assert_int_equal(it->tags.n, 0);
    it = TP_LIST_AT(item_cfg_t, cfg.items, 2);
    assert_int_equal(it->weight, 100);
    assert_string_equal(it->tags.items[0], "r");
    tp__config_free(&app_schema, &cfg);

    /* Error inside a nested list item, and a list item that is not a single value. */
    assert_int_equal(load(&app_schema, &cfg, "items:\n  - weight: 0\n", &err), TP_ERR_CONFIG);
    assert_string_equal(err.key, "items[0].weight");
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 13);
    assert_int_equal(load(&app_schema, &cfg, "names: [a, [b]]\n", &err), TP_ERR_CONFIG);
    assert_string_equal(err.key, "names[1]");
    assert_int_equal(err.column, 12);
    assert_true(all_zero(&cfg, sizeof(cfg)));
}

static void test_bounds(void **state) {
    app_cfg_t cfg;
    tp_config_error_t err;
    static const struct {
        const char *yaml;
        bool ok;
    } cases[] = {
        {"count: -10\n", true},
        {"count: 10\n", true},
        {"count: -11\n", false},
        {"count: 11\n", false},
        {"threads: auto\n", true},
        {"threads: 1\n", true},
        {"threads: 64\n", true},
        {"threads: 0\n", false},
        {"threads: 65\n", false},
        {"wait: 1ms\n", true},
        {"wait: 60s\n", true},
        {"wait: 1m\n", true},
        {"wait: 0\n", false},
        {"wait: 60001ms\n", false},
        {"buf: 1KiB\n", true},
        {"buf: 1GiB\n", true},
        {"buf: 1023\n", false},
        {"buf: 1073741825\n", false},
        {"count: 9223372036854775807\n", false},
        {"count: 9223372036854775808\n", false},
        {"sub: {ttl: 18446744073709551615ms}\n", true}, /* 0,0: unbounded */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = load(&app_schema, &cfg, cases[i].yaml, &err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu '%s': rc %d (%s)", i, cases[i].yaml, rc, err.msg);
        tp__config_free(&app_schema, &cfg);
    }
    assert_int_equal(load(&app_schema, &cfg, "count: 11\n", &err), TP_ERR_CONFIG);
    assert_string_equal(err.msg, "11 is out of range -10..10");
    assert_int_equal(load(&app_schema, &cfg, "wait: 61s\n", &err), TP_ERR_CONFIG);
    assert_string_equal(err.msg, "61s is out of range 1ms..1m");
}

/* A default that does not parse is the program's bug, and the message says so. */
static void test_invalid_default(void **state) {
    typedef struct {
        uint64_t t;
    } bad_cfg_t;
    static const tp_setting_t bad_settings[] = {
        TP_SETTING_DURATION(bad_cfg_t, t, "5 seconds", 0, 0, "t"),
        TP_SETTING_END,
    };
    tp_config_schemas_t s;
    tp_config_t cfg;
    tp_config_error_t err;
    tp__config_schemas_init(&s, bad_settings, sizeof(bad_cfg_t), NULL, 0);
    assert_int_equal(load(&s.root, &cfg, "runtime: {}\n", &err), TP_ERR_CONFIG);
    assert_string_equal(err.key, "app.t");
    assert_int_equal(err.line, 0);
    assert_non_null(strstr(err.msg, "invalid default '5 seconds' in the program's schema (a bug)"));
    assert_true(all_zero(&cfg, sizeof(cfg)));
}

static void test_load_file(void **state) {
    tp_config_schemas_t s;
    tp_config_t cfg;
    tp_config_error_t err;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    assert_int_equal(tp__config_load_file(&s.root, &cfg, "/nonexistent/turnpike.yaml", &err),
                     TP_ERR_CONFIG);
    assert_string_equal(err.file, "/nonexistent/turnpike.yaml");
    assert_non_null(strstr(err.msg, "cannot open the configuration"));

    char path[] = "/tmp/tp-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = "runtime:\n  workers: 3\n  log_level: lots\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    assert_int_equal(tp__config_load_file(&s.root, &cfg, path, &err), TP_ERR_CONFIG);
    assert_string_equal(err.file, path);
    assert_int_equal(err.line, 3);
    char msg[600], want[600];
    tp__config_error_format(&err, msg, sizeof(msg));
    snprintf(want, sizeof(want),
             "%s:3:14: runtime.log_level: 'lots' is not one of: debug, info, warn, error", path);
    assert_string_equal(msg, want);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("runtime:\n  workers: 3\n", f);
    fclose(f);
    assert_int_equal(tp__config_load_file(&s.root, &cfg, path, &err), 0);
    assert_int_equal(cfg.runtime.workers, 3);
    tp__config_free(&s.root, &cfg);
    unlink(path);
}

/* ---- The default config -------------------------------------------------------------------- */

static void test_print_default_framework(void **state) {
    tp_config_schemas_t s;
    tp_config_t printed, expected;
    tp_config_error_t err;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    char *text =
        print_to_string(&s.root, "Turnpike " TP_VERSION_STRING "\nthe default configuration");
    assert_true(strncmp(text, "# Turnpike 0.1.0\n# the default configuration\n\n", 46) == 0);
    assert_non_null(strstr(text, "\nruntime:\n"));
    assert_non_null(strstr(text,
                           "  # least severe level written to the JSON log on stderr "
                           "(debug | info | warn | error, default info)\n  log_level: info\n"));
    assert_non_null(strstr(text, "(size, 4KiB..4MiB, default 64KiB)\n  buffer_size: 64KiB\n"));
    assert_non_null(strstr(text, "\nendpoints:\n  # unique name, used in logs and metrics (string, "
                                 "required)\n  - name: proxy\n"));
    assert_non_null(strstr(text, "    listen: [127.0.0.1:8080]\n"));
    assert_non_null(strstr(text, "    # upstream:\n"));
    assert_non_null(strstr(text, "    timeouts:\n"));
    assert_non_null(strstr(text, "      idle: 60s\n"));
    assert_non_null(strstr(text, "    app: {}\n"));
    assert_non_null(strstr(text, "\napp: {}\n"));

    int rc = load(&s.root, &printed, text, &err);
    if (rc)
        fail_msg("%s:%d:%d %s: %s\n%s", err.file, err.line, err.column, err.key, err.msg, text);
    assert_int_equal(load(&s.root, &expected,
                          "endpoints:\n- {name: proxy, type: http_proxy, listen: 127.0.0.1:8080}\n",
                          &err),
                     0);
    assert_int_equal(printed.endpoints.n, 1);
    assert_same(&s.root, &printed, &expected);
    tp__config_free(&s.root, &printed);
    tp__config_free(&s.root, &expected);
    free(text);
}

/* An optional section (an upstream group's `tls`): absent is NULL (off), present (even empty) is
 * on with its defaults; its check runs only when present; the default config shows it commented. */
static void test_optional_section(void **state) {
    tp_config_schemas_t s;
    tp__config_schemas_init(&s, NULL, 0, NULL, 0);
    tp_config_t cfg;
    tp_config_error_t err;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(load(&s.root, &cfg, "upstreams: [{name: a, servers: ['h:1']}]\n", &err), 0);
    assert_null(TP_LIST_AT(tp_upstream_cfg_t, cfg.upstreams, 0)->tls);
    tp__config_free(&s.root, &cfg);

    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(
        load(&s.root, &cfg, "upstreams: [{name: a, servers: ['h:1'], tls: {}}]\n", &err), 0);
    const tp_tls_client_cfg_t *t = TP_LIST_AT(tp_upstream_cfg_t, cfg.upstreams, 0)->tls;
    assert_non_null(t);
    assert_true(t->verify);
    assert_true(t->session_resumption);
    assert_int_equal(t->ocsp, TP_OCSP_IF_STAPLED);
    assert_int_equal(t->min_version, TP_TLS_V1_2);
    assert_int_equal(t->profile, TP_TLS_MODERN);
    assert_null(t->ca);
    assert_null(t->server_name);
    tp__config_free(&s.root, &cfg);

    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(load(&s.root, &cfg,
                          "upstreams:\n- name: a\n  servers: ['h:1']\n  tls:\n    ca: /x.pem\n"
                          "    server_name: api.example\n    ocsp: require\n    crl: [/c1, /c2]\n",
                          &err),
                     0);
    t = TP_LIST_AT(tp_upstream_cfg_t, cfg.upstreams, 0)->tls;
    assert_string_equal(t->ca, "/x.pem");
    assert_string_equal(t->server_name, "api.example");
    assert_int_equal(t->ocsp, TP_OCSP_REQUIRE);
    assert_int_equal(t->crl.n, 2);
    tp__config_free(&s.root, &cfg);

    static const struct {
        const char *yaml, *key, *msg;
    } bad[] = {
        {"upstreams:\n- name: a\n  servers: ['h:1']\n  tls: {certificate: /c.pem}\n",
         "upstreams[0].tls.private_key", "both 'certificate'"},
        {"upstreams:\n- name: a\n  servers: ['h:1']\n  tls: {verify: false, ocsp: require}\n",
         "upstreams[0].tls.ocsp", "needs verify"},
        {"upstreams:\n- name: a\n  servers: ['h:1']\n  tls: {}\n  health: {check: http}\n",
         "upstreams[0].health", "plain HTTP"},
        {"upstreams:\n- name: a\n  servers: ['h:1']\n  tls: {ocsp: 'off', crl: [/c]}\n",
         "upstreams[0].tls.ocsp", "CRL checks off"},
        {"upstreams:\n- name: a\n  servers: ['h:1']\n  tls: {ocsp: maybe}\n",
         "upstreams[0].tls.ocsp", "if_stapled"},
        {"endpoints:\n- name: p\n  type: http_proxy\n  listen: [127.0.0.1:0]\n  origin_tls: "
         "{server_name: x}\n",
         "endpoints[0].origin_tls.server_name", "unknown key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&cfg, 0, sizeof(cfg));
        int rc = load(&s.root, &cfg, bad[i].yaml, &err);
        if (rc != TP_ERR_CONFIG || strcmp(err.key, bad[i].key) != 0 || !strstr(err.msg, bad[i].msg))
            fail_msg("case %zu: rc %d key '%s': %s", i, rc, err.key, err.msg);
    }

    char *text = print_to_string(&s.root, NULL);
    assert_non_null(strstr(text, "# tls:"));
    assert_non_null(strstr(text, "origin_tls:\n"));
    free(text);
}

static void test_print_default_app(void **state) {
    /* The every-type schema as an app plugged into the framework... */
    tp_config_schemas_t s;
    tp_config_t printed, expected;
    tp_config_error_t err;
    tp__config_schemas_init(&s, app_settings, sizeof(app_cfg_t), app_ep_settings,
                            sizeof(app_ep_cfg_t));
    char *text = print_to_string(&s.root, NULL);
    assert_non_null(
        strstr(text, "\napp:\n  # a flag (true or false, default true)\n  flag: true\n"));
    assert_non_null(strstr(text, "  label: \"hello: world #1\"\n"));
    assert_non_null(strstr(text, "  secret: \"s3cr\\\"et\\\\\"\n"));
    assert_non_null(strstr(text, "  # unset:\n"));
    assert_non_null(
        strstr(text, "(fast | safe | weird-one, default weird-one)\n  mode: weird-one\n"));
    assert_non_null(strstr(text, "  binds: \"[::1]:8080, 127.0.0.1:0\"\n"));
    assert_non_null(strstr(text, "  threads: auto\n"));
    assert_non_null(strstr(text, "  items:\n    # item id (string, default none)\n    - id: first\n"
                                 "      # weight (integer, 1..100, default 1)\n      weight: 3\n"));
    assert_non_null(strstr(text, "      tags: [a, \"b c\", \"x,y\"]\n"));
    /* A list with no example prints empty, with one item documented in comments. */
    assert_non_null(strstr(text, "  none: []\n  # for example:\n  # none:\n"));
    assert_non_null(strstr(text, "    # on (true or false, default true)\n    # - on: true\n"));
    assert_non_null(
        strstr(text, "    app:\n      # quota (size, default 10MiB)\n      quota: 10MiB\n"));
    int rc = load(&s.root, &printed, text, &err);
    if (rc)
        fail_msg("%s:%d:%d %s: %s\n%s", err.file, err.line, err.column, err.key, err.msg, text);
    assert_int_equal(load(&s.root, &expected,
                          "endpoints:\n- {name: proxy, type: http_proxy, listen: 127.0.0.1:8080}\n"
                          "app:\n  items: [{id: first, weight: 3, tags: [a, b c, 'x,y']}]\n"
                          "  none: []\n",
                          &err),
                     0);
    app_cfg_t *app = printed.app;
    assert_int_equal(app->items.n, 1);
    assert_int_equal(TP_LIST_AT(item_cfg_t, app->items, 0)->tags.n, 3);
    assert_same(&s.root, &printed, &expected);
    tp__config_free(&s.root, &printed);
    tp__config_free(&s.root, &expected);
    free(text);

    /* ...and as a root schema of its own. */
    app_cfg_t a, b;
    text = print_to_string(&app_schema, "app");
    rc = load(&app_schema, &a, text, &err);
    if (rc)
        fail_msg("%d:%d %s: %s\n%s", err.line, err.column, err.key, err.msg, text);
    assert_int_equal(load(&app_schema, &b,
                          "items: [{id: first, weight: 3, tags: [a, b c, 'x,y']}]\n"
                          "none: []\n",
                          &err),
                     0);
    assert_same(&app_schema, &a, &b);
    tp__config_free(&app_schema, &a);
    tp__config_free(&app_schema, &b);
    free(text);
}

/* An example that names a key its schema does not have is refused. */
static void test_print_bad_example(void **state) {
    static const tp_schema_t bad_item = {.name = "item",
                                         .size = sizeof(item_cfg_t),
                                         .settings = item_settings,
                                         .example = "id: x\nwieght: 3\n"};
    typedef struct {
        tp_list_t l;
    } holder_t;
    static const tp_setting_t holder_settings[] = {
        TP_SETTING_LIST(holder_t, l, &bad_item, "l"),
        TP_SETTING_END,
    };
    static const tp_schema_t holder = {
        .name = "h", .size = sizeof(holder_t), .settings = holder_settings};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(tp__config_print_default(f, &holder, NULL), TP_ERR_INVAL);
    fclose(f);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_value_forms),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_invalid_default),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_print_default_framework),
        cmocka_unit_test(test_optional_section),
        cmocka_unit_test(test_print_default_app),
        cmocka_unit_test(test_print_bad_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
