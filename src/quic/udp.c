/* udp.c: the UDP socket of an endpoint: SO_REUSEPORT, batched receive (recvmmsg with UDP_GRO,
 * PKTINFO, ECN and SO_RXQ_OVFL) and a send queue flushed with sendmmsg and UDP_SEGMENT (GSO). */
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quic/quic_int.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define CTRL_LEN 256

static void setopt(int fd, int level, int name, int value) {
    /* Best effort: a kernel without the option still works, only without the optimisation. */
    (void)setsockopt(fd, level, name, &value, sizeof(value));
}

static bool is_wildcard(const tp_addr_t *a) {
    if (a->u.sa.sa_family == AF_INET) {
        return a->u.in.sin_addr.s_addr == htonl(INADDR_ANY);
    }
    return IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
}

static int errno_to_tp(int e) {
    switch (e) {
    case EADDRINUSE: return TP_ERR_ADDRINUSE;
    case ENOMEM:
    case ENOBUFS: return TP_ERR_NOMEM;
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT: return TP_ERR_INVAL;
    default: return TP_ERR_IO;
    }
}

/* Fails with TP_ERR_ADDRINUSE when another socket (another process) holds the address: with
 * SO_REUSEPORT alone two servers could share a port without noticing. */
static int probe_exclusive(const tp_addr_t *bind_addr) {
    int fd = socket(bind_addr->u.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno_to_tp(errno);
    }
    if (bind_addr->u.sa.sa_family == AF_INET6) {
        setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, is_wildcard(bind_addr) ? 0 : 1);
    }
    int rc = bind(fd, &bind_addr->u.sa, tp_addr_len(bind_addr)) == 0 ? 0 : errno_to_tp(errno);
    close(fd);
    return rc;
}

int tp__quic_udp_open(tp_quic_udp_t *u, const tp_addr_t *bind_addr, bool client, bool probe,
                      size_t max_udp_payload) {
    memset(u, 0, sizeof(*u));
    u->fd = -1;
    u->last_ecn = -1;
    int family = bind_addr->u.sa.sa_family;
    if (family != AF_INET && family != AF_INET6) {
        return TP_ERR_INVAL;
    }
    if (probe && tp_addr_port(bind_addr) != 0) {
        int rc = probe_exclusive(bind_addr);
        if (rc != 0) {
            return rc;
        }
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno_to_tp(errno);
    }
    u->fd = fd;
    u->family = family;
    u->wildcard = is_wildcard(bind_addr);
    setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    setopt(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
    setopt(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);
    setopt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1);
    if (family == AF_INET6) {
        /* A wildcard [::] takes IPv4 too (as ::ffff:a.b.c.d); a specific address only its own. */
        setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, u->wildcard ? 0 : 1);
        setopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        setopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1);
        setopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
        if (client) {
            setopt(fd, IPPROTO_IPV6, IPV6_RECVERR, 1);
        }
    }
    if (family == AF_INET || u->wildcard) {
        setopt(fd, IPPROTO_IP, IP_PKTINFO, 1);
        setopt(fd, IPPROTO_IP, IP_RECVTOS, 1);
        setopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
        if (client) {
            setopt(fd, IPPROTO_IP, IP_RECVERR, 1);
        }
    }
    int one = 1;
    u->gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    u->gso = true; /* confirmed or cleared by the first batched send */
    if (bind(fd, &bind_addr->u.sa, tp_addr_len(bind_addr)) != 0) {
        int rc = errno_to_tp(errno);
        tp__quic_udp_close_fd(u);
        return rc;
    }
    socklen_t len = sizeof(u->local.u);
    if (getsockname(fd, &u->local.u.sa, &len) != 0) {
        int rc = errno_to_tp(errno);
        tp__quic_udp_close_fd(u);
        return rc;
    }
    u->rx_bufs = malloc((size_t)TP_QUIC_RX_BATCH * TP_QUIC_RX_BUFSIZE);
    if (!u->rx_bufs) {
        tp__quic_udp_close_fd(u);
        return TP_ERR_NOMEM;
    }
    for (unsigned i = 0; i < TP_QUIC_TX_SLOTS; i++) {
        u->tx[i].buf = malloc(TP_QUIC_TX_SLOT_SIZE(max_udp_payload));
        if (!u->tx[i].buf) {
            tp__quic_udp_close_fd(u);
            return TP_ERR_NOMEM;
        }
    }
    return 0;
}

/* `a` as a plain IPv4 address when it is an IPv4-mapped IPv6 one (a dual-stack socket's view). */
static void unmap(tp_addr_t *out, const tp_addr_t *a) {
    *out = *a;
    const struct in6_addr *a6 = &a->u.in6.sin6_addr;
    if (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(a6)) {
        memset(out, 0, sizeof(*out));
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = a->u.in6.sin6_port;
        memcpy(&out->u.in.sin_addr, &a6->s6_addr[12], 4);
    }
}

size_t tp__quic_route_mtu(const tp_addr_t *remote, const tp_addr_t *local) {
    tp_addr_t r;
    unmap(&r, remote);
    int family = r.u.sa.sa_family;
    if (family != AF_INET && family != AF_INET6) {
        return 0;
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;
    }
    if (local) {
        /* From the address the connection uses, so that source-based routing picks the same
         * route as its packets will (a failure leaves the kernel's default source). */
        tp_addr_t l;
        unmap(&l, local);
        if (l.u.sa.sa_family == family && !is_wildcard(&l)) {
            tp_addr_set_port(&l, 0);
            (void)bind(fd, &l.u.sa, tp_addr_len(&l));
        }
    }
    int mtu = 0;
    socklen_t mlen = sizeof(mtu);
    if (connect(fd, &r.u.sa, tp_addr_len(&r)) != 0 ||
        getsockopt(fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
                   family == AF_INET ? IP_MTU : IPV6_MTU, &mtu, &mlen) != 0) {
        mtu = 0;
    }
    close(fd);
    return mtu > 0 ? (size_t)mtu : 0;
}

void tp__quic_udp_close_fd(tp_quic_udp_t *u) {
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    free(u->rx_bufs);
    u->rx_bufs = NULL;
    for (unsigned i = 0; i < TP_QUIC_TX_SLOTS; i++) {
        free(u->tx[i].buf);
        u->tx[i].buf = NULL;
    }
}

void tp__quic_addr_from_sa(tp_addr_t *out, const struct sockaddr *sa) {
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        memcpy(&out->u.in, sa, sizeof(out->u.in));
    } else if (sa->sa_family == AF_INET6) {
        memcpy(&out->u.in6, sa, sizeof(out->u.in6));
    }
}

/* The destination address of a received datagram: the PKTINFO address with our port, or the
 * bound address when the socket is not a wildcard. */
static void parse_cmsgs(tp_quic_udp_t *u, struct msghdr *m, tp_quic_rx_t *rx, size_t *gro) {
    rx->local = u->local;
    rx->ecn = 0;
    *gro = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && u->wildcard) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            if (u->family == AF_INET) {
                rx->local.u.in.sin_addr = pi.ipi_addr;
            } else {
                /* IPv4 on a dual-stack socket: the mapped form, as the peer address is. */
                struct in6_addr *a = &rx->local.u.in6.sin6_addr;
                memset(a, 0, sizeof(*a));
                a->s6_addr[10] = 0xff;
                a->s6_addr[11] = 0xff;
                memcpy(&a->s6_addr[12], &pi.ipi_addr, 4);
            }
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && u->wildcard) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            rx->local.u.in6.sin6_addr = pi.ipi6_addr;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
            rx->ecn = *(const uint8_t *)CMSG_DATA(c) & NGTCP2_ECN_MASK;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            rx->ecn = (uint8_t)(v & NGTCP2_ECN_MASK);
        } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            *gro = v > 0 ? (size_t)v : 0;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            if (v > u->rxq_ovfl) {
                u->rx_dropped += v - u->rxq_ovfl;
            }
            u->rxq_ovfl = v;
        }
    }
}

int tp__quic_udp_recv_batch(tp_quic_udp_t *u, struct tp_quic_endpoint *ep) {
    struct mmsghdr msgs[TP_QUIC_RX_BATCH];
    struct iovec iov[TP_QUIC_RX_BATCH];
    struct sockaddr_storage names[TP_QUIC_RX_BATCH];
    /* cmsg buffers must be aligned for struct cmsghdr */
    union {
        char buf[CTRL_LEN];
        struct cmsghdr align;
    } ctrl[TP_QUIC_RX_BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (unsigned i = 0; i < TP_QUIC_RX_BATCH; i++) {
        iov[i].iov_base = u->rx_bufs + (size_t)i * TP_QUIC_RX_BUFSIZE;
        iov[i].iov_len = TP_QUIC_RX_BUFSIZE;
        msgs[i].msg_hdr.msg_name = &names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = ctrl[i].buf;
        msgs[i].msg_hdr.msg_controllen = CTRL_LEN;
    }
    int n = recvmmsg(u->fd, msgs, TP_QUIC_RX_BATCH, 0, NULL);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    }
    for (int i = 0; i < n; i++) {
        struct msghdr *m = &msgs[i].msg_hdr;
        if (m->msg_flags & MSG_TRUNC) {
            u->rx_dropped++; /* larger than any QUIC datagram we accept */
            continue;
        }
        tp_quic_rx_t rx;
        size_t gro;
        tp__quic_addr_from_sa(&rx.remote, (struct sockaddr *)&names[i]);
        parse_cmsgs(u, m, &rx, &gro);
        const uint8_t *p = iov[i].iov_base;
        size_t left = msgs[i].msg_len;
        size_t seg = gro ? gro : left;
        while (left > 0) {
            rx.data = p;
            rx.len = left < seg ? left : seg;
            tp__quic_endpoint_on_packet(ep, &rx);
            p += rx.len;
            left -= rx.len;
        }
    }
    return n;
}

void tp__quic_udp_read_errors(tp_quic_udp_t *u, struct tp_quic_endpoint *ep) {
    for (int guard = 0; guard < 64; guard++) {
        struct sockaddr_storage name;
        union {
            char buf[512];
            struct cmsghdr align;
        } ctrl;
        uint8_t data[64];
        struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
        struct msghdr m = {.msg_name = &name,
                           .msg_namelen = sizeof(name),
                           .msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = ctrl.buf,
                           .msg_controllen = sizeof(ctrl.buf)};
        if (recvmsg(u->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
            return;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            bool v4 = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
            bool v6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
            if (!v4 && !v6) {
                continue;
            }
            struct sock_extended_err ee;
            memcpy(&ee, CMSG_DATA(c), sizeof(ee));
            bool icmp = ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6;
            if (icmp && (ee.ee_errno == ECONNREFUSED || ee.ee_errno == EHOSTUNREACH ||
                         ee.ee_errno == ENETUNREACH)) {
                tp_addr_t remote;
                /* msg_name holds the destination of the datagram that failed. */
                tp__quic_addr_from_sa(&remote, (struct sockaddr *)&name);
                tp__quic_endpoint_on_unreachable(ep, &remote);
            }
        }
    }
}

tp_quic_tx_t *tp__quic_udp_tx_slot(tp_quic_udp_t *u) {
    if (u->tx_count == TP_QUIC_TX_SLOTS) {
        return NULL;
    }
    tp_quic_tx_t *t = &u->tx[(u->tx_head + u->tx_count) % TP_QUIC_TX_SLOTS];
    t->len = 0;
    t->seglen = 0;
    t->ecn = 0;
    return t;
}

void tp__quic_udp_tx_commit(tp_quic_udp_t *u) { u->tx_count++; }

static void set_ecn(tp_quic_udp_t *u, uint8_t ecn) {
    if (u->last_ecn == ecn) {
        return;
    }
    int tos = ecn;
    if (u->family == AF_INET6) {
        (void)setsockopt(u->fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
    }
    if (u->family == AF_INET || u->wildcard) {
        (void)setsockopt(u->fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    }
    u->last_ecn = ecn;
}

/* Fills the control data of one datagram: the GSO segment size and, on a wildcard socket, the
 * source address (so replies leave from the address the peer wrote to). */
static size_t build_cmsgs(tp_quic_udp_t *u, char *buf, size_t cap, size_t seglen, size_t len,
                          const tp_addr_t *local) {
    struct msghdr m = {.msg_control = buf, .msg_controllen = cap};
    memset(buf, 0, cap);
    size_t used = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (seglen && len > seglen) {
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t s = (uint16_t)seglen;
        memcpy(CMSG_DATA(c), &s, sizeof(s));
        used += CMSG_SPACE(sizeof(uint16_t));
        c = (struct cmsghdr *)(buf + used);
    }
    if (u->wildcard && local) {
        if (local->u.sa.sa_family == AF_INET) {
            struct in_pktinfo pi = {.ipi_spec_dst = local->u.in.sin_addr};
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            used += CMSG_SPACE(sizeof(pi));
        } else if (IN6_IS_ADDR_V4MAPPED(&local->u.in6.sin6_addr)) {
            struct in_pktinfo pi;
            memset(&pi, 0, sizeof(pi));
            memcpy(&pi.ipi_spec_dst, &local->u.in6.sin6_addr.s6_addr[12], 4);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            used += CMSG_SPACE(sizeof(pi));
        } else {
            struct in6_pktinfo pi = {.ipi6_addr = local->u.in6.sin6_addr};
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(c), &pi, sizeof(pi));
            used += CMSG_SPACE(sizeof(pi));
        }
    }
    return used;
}

/* ENOBUFS is not one: the socket stays writable while the device queue is full, so polling for
 * writability would spin; the datagram is dropped (counted) and congestion control resends. */
static bool transient(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

/* Sends a super-datagram packet by packet (GSO refused by the kernel or the device). */
static void send_split(tp_quic_udp_t *u, struct tp_quic_endpoint *ep, tp_quic_tx_t *t) {
    for (size_t off = 0; off < t->len; off += t->seglen) {
        size_t n = t->len - off < t->seglen ? t->len - off : t->seglen;
        tp__quic_udp_send_now(u, ep, t->buf + off, n, &t->remote, &t->local, t->ecn);
    }
}

int tp__quic_udp_flush(tp_quic_udp_t *u, struct tp_quic_endpoint *ep) {
    unsigned icmp_retry = TP_QUIC_TX_SLOTS; /* the slot already sent again after an ICMP error */
    while (u->tx_count > 0) {
        struct mmsghdr msgs[TP_QUIC_TX_SLOTS];
        struct iovec iov[TP_QUIC_TX_SLOTS];
        union {
            char buf[CTRL_LEN];
            struct cmsghdr align;
        } ctrl[TP_QUIC_TX_SLOTS];
        memset(msgs, 0, sizeof(msgs));
        /* One sendmmsg carries consecutive entries with the same ECN marking (a socket option). */
        uint8_t ecn = u->tx[u->tx_head].ecn;
        unsigned cnt = 0;
        for (; cnt < u->tx_count; cnt++) {
            tp_quic_tx_t *t = &u->tx[(u->tx_head + cnt) % TP_QUIC_TX_SLOTS];
            if (t->ecn != ecn) {
                break;
            }
            iov[cnt].iov_base = t->buf;
            iov[cnt].iov_len = t->len;
            msgs[cnt].msg_hdr.msg_name = &t->remote.u.sa;
            msgs[cnt].msg_hdr.msg_namelen = tp_addr_len(&t->remote);
            msgs[cnt].msg_hdr.msg_iov = &iov[cnt];
            msgs[cnt].msg_hdr.msg_iovlen = 1;
            size_t cl = build_cmsgs(u, ctrl[cnt].buf, CTRL_LEN, t->seglen, t->len, &t->local);
            msgs[cnt].msg_hdr.msg_control = cl ? ctrl[cnt].buf : NULL;
            msgs[cnt].msg_hdr.msg_controllen = cl;
        }
        set_ecn(u, ecn);
        int n = sendmmsg(u->fd, msgs, cnt, 0);
        if (n < 0) {
            int e = errno;
            if (transient(e)) {
                return TP_ERR_IO;
            }
            if (e == EINTR) {
                continue;
            }
            tp_quic_tx_t *t = &u->tx[u->tx_head];
            if ((e == EIO || e == EINVAL) && t->seglen && t->len > t->seglen) {
                /* No GSO here (e.g. a device without checksum offload): split from now on. */
                u->gso = false;
                send_split(u, ep, t);
            } else if ((e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH) &&
                       icmp_retry != u->tx_head) {
                /* A pending ICMP error was reported instead of sending: read it, send again,
                 * once. The same error twice is the route itself (no route to the peer now):
                 * dropping the datagram is all we can do, or this loop would spin. */
                icmp_retry = u->tx_head;
                tp__quic_udp_read_errors(u, ep);
                continue;
            } else {
                ep->stats.udp_drops++;
            }
            icmp_retry = TP_QUIC_TX_SLOTS;
            u->tx_head = (u->tx_head + 1) % TP_QUIC_TX_SLOTS;
            u->tx_count--;
            continue;
        }
        for (int i = 0; i < n; i++) {
            tp_quic_tx_t *t = &u->tx[(u->tx_head + (unsigned)i) % TP_QUIC_TX_SLOTS];
            size_t segs =
                t->seglen && t->len > t->seglen ? (t->len + t->seglen - 1) / t->seglen : 1;
            ep->stats.packets_out += segs;
            ep->stats.bytes_out += t->len;
            if (t->ecn) {
                ep->stats.ecn_packets_out += segs;
            }
            if (segs > 1) {
                ep->stats.gso_batches++;
            }
        }
        u->tx_head = (u->tx_head + (unsigned)n) % TP_QUIC_TX_SLOTS;
        u->tx_count -= (unsigned)n;
        icmp_retry = TP_QUIC_TX_SLOTS;
    }
    return 0;
}

void tp__quic_udp_send_now(tp_quic_udp_t *u, struct tp_quic_endpoint *ep, const uint8_t *data,
                           size_t len, const tp_addr_t *remote, const tp_addr_t *local,
                           uint8_t ecn) {
    union {
        char buf[CTRL_LEN];
        struct cmsghdr align;
    } ctrl;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr m = {.msg_name = (void *)&remote->u.sa,
                       .msg_namelen = tp_addr_len(remote),
                       .msg_iov = &iov,
                       .msg_iovlen = 1};
    size_t cl = build_cmsgs(u, ctrl.buf, CTRL_LEN, 0, len, local);
    m.msg_control = cl ? ctrl.buf : NULL;
    m.msg_controllen = cl;
    set_ecn(u, ecn);
    if (sendmsg(u->fd, &m, 0) < 0) {
        ep->stats.udp_drops++;
        return;
    }
    ep->stats.packets_out++;
    ep->stats.bytes_out += len;
    if (ecn) {
        ep->stats.ecn_packets_out++;
    }
}
