/* egress-firewall: private destinations only for clients whose CONNECT carries the pre-shared key.
 */
#include <turnpike.h>

typedef struct {
    char *psk;
    tp_cidr_set_t *private_cidrs;
} settings_t;

typedef struct {
    bool may_reach_private; /* per ingress connection */
} conn_ext_t;

static const tp_setting_t settings_schema[] = {
    TP_SETTING_SECRET_STRING(settings_t, psk, NULL,
                             "pre-shared key that unlocks private ranges (no key: never)"),
    TP_SETTING_CIDRS(settings_t, private_cidrs, "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16",
                     "ranges that need the key"),
    TP_SETTING_END,
};

static tp_decision_t on_connect_request(void *self, tp_request_t *req) {
    const settings_t *s = tp_app_settings(req);
    tp_str_t auth = tp_request_header(req, "proxy-authorization");
    TP_EXT(conn_ext_t, tp_request_conn(req))->may_reach_private =
        tp_str_eq_ct(auth, "Preshared ", s->psk);
    return tp_allow();
}

static tp_decision_t on_egress(void *self, tp_egress_t *eg, const tp_addr_t *upstream) {
    const settings_t *s = tp_app_settings(eg);
    if (tp_cidr_set_contains(s->private_cidrs, upstream) &&
        !TP_EXT(conn_ext_t, tp_egress_conn(eg))->may_reach_private)
        return tp_block(403, "destination_ip_prohibited");
    return tp_allow();
}

static const tp_app_t app = {
    .name = "egress-firewall",
    .version = "1.0",
    .description = "private destinations only with Proxy-Authorization: Preshared <key>",
    .settings = settings_schema,
    .settings_size = sizeof(settings_t),
    .ext = {[TP_EXT_INGRESS_CONNECTION] = TP_EXT_SPEC(conn_ext_t)},
    .hooks = {.http_request = {.handle_proxy_connect_request = on_connect_request},
              .egress = {.handle_connection = on_egress}},
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
