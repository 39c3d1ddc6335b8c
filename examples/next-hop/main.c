/* next-hop: tells CONNECT clients which address the tunnel reached (RFC 9209 Proxy-Status
 * next-hop). */
#include <stdio.h>
#include <turnpike.h>

typedef struct {
    char next_hop[TP_ADDR_STRLEN]; /* per ingress connection */
} conn_ext_t;

static void on_established(void *self, tp_egress_t *eg, const tp_addr_t *upstream) {
    conn_ext_t *ext = TP_EXT(conn_ext_t, tp_egress_conn(eg));
    tp_addr_format(upstream, ext->next_hop, sizeof(ext->next_hop));
}

static void on_connect_response(void *self, tp_request_t *req, tp_response_t *resp) {
    const conn_ext_t *ext = TP_EXT(conn_ext_t, tp_request_conn(req));
    if (tp_response_status(resp) / 100 != 2 || !ext->next_hop[0])
        return;
    char value[TP_ADDR_STRLEN + 32];
    snprintf(value, sizeof(value), "turnpike; next-hop=\"%s\"", ext->next_hop);
    tp_response_add_header(resp, "Proxy-Status", value);
}

static const tp_app_t app = {
    .name = "next-hop",
    .version = "1.0",
    .description = "adds Proxy-Status next-hop to CONNECT responses",
    .ext = {[TP_EXT_INGRESS_CONNECTION] = TP_EXT_SPEC(conn_ext_t)},
    .hooks = {.egress = {.handle_connection_established = on_established},
              .http_request = {.handle_proxy_connect_response = on_connect_response}},
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
