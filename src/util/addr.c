/* addr.c: parsing, formatting and comparing socket addresses; the IANA special-purpose ranges. */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/common.h"

/* "0".."65535": decimal digits only, no sign, no spaces. */
static bool parse_port(const char *s, size_t len, uint16_t *port) {
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* An IPv6 address with an optional zone ("fe80::1%eth0" or "fe80::1%2"). */
static bool parse_ip6(const char *s, size_t len, struct sockaddr_in6 *in6) {
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *zone = strchr(buf, '%');
    if (zone) {
        *zone++ = '\0';
        if (*zone == '\0')
            return false;
        char *end;
        unsigned long idx = strtoul(zone, &end, 10);
        if (*end != '\0' || zone[0] < '0' || zone[0] > '9') {
            idx = if_nametoindex(zone);
            if (idx == 0)
                return false;
        } else if (idx == 0 || idx > UINT32_MAX) {
            return false;
        }
        in6->sin6_scope_id = (uint32_t)idx;
    }
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
        return false;
    in6->sin6_family = AF_INET6;
    return true;
}

static bool parse_ip4(const char *s, size_t len, struct sockaddr_in *in) {
    char buf[INET_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &in->sin_addr) != 1)
        return false;
    in->sin_family = AF_INET;
    return true;
}

int tp_addr_parse(tp_addr_t *addr, const char *text, bool allow_no_port) {
    memset(addr, 0, sizeof(*addr));
    if (!text)
        return TP_ERR_INVAL;
    size_t len = strlen(text);
    uint16_t port = 0;
    bool ok;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (!close)
            return TP_ERR_INVAL;
        ok = parse_ip6(text + 1, (size_t)(close - text - 1), &addr->u.in6);
        const char *rest = close + 1;
        if (*rest == '\0')
            ok = ok && allow_no_port;
        else
            ok = ok && *rest == ':' && parse_port(rest + 1, strlen(rest + 1), &port);
    } else {
        const char *colon = strchr(text, ':');
        if (!colon) {
            ok = allow_no_port && parse_ip4(text, len, &addr->u.in);
        } else if (strchr(colon + 1, ':')) {
            /* Two colons or more: a bare IPv6 address; with a port it needs brackets. */
            ok = allow_no_port && parse_ip6(text, len, &addr->u.in6);
        } else {
            ok = parse_ip4(text, (size_t)(colon - text), &addr->u.in) &&
                 parse_port(colon + 1, strlen(colon + 1), &port);
        }
    }
    if (!ok) {
        memset(addr, 0, sizeof(*addr));
        return TP_ERR_INVAL;
    }
    tp_addr_set_port(addr, port);
    return 0;
}

/* Copies NUL-terminated `s` into buf (size > 0), truncating like snprintf. */
static void copy_str(char *buf, size_t size, const char *s, size_t n) {
    if (n >= size)
        n = size - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

/* Dotted quad of a network-order IPv4 address into ip (16 bytes); returns the length. glibc's
 * inet_ntop formats IPv4 with sprintf, which costs thousands of instructions: this runs for every
 * proxied request (X-Forwarded-For, Forwarded, hashing by client address). */
static size_t format_ipv4(const struct in_addr *a, char ip[16]) {
    const unsigned char *b = (const unsigned char *)&a->s_addr;
    size_t n = 0;
    for (int k = 0; k < 4; k++) {
        unsigned v = b[k];
        if (v >= 100)
            ip[n++] = (char)('0' + v / 100);
        if (v >= 10)
            ip[n++] = (char)('0' + v / 10 % 10);
        ip[n++] = (char)('0' + v % 10);
        if (k < 3)
            ip[n++] = '.';
    }
    ip[n] = '\0';
    return n;
}

char *tp_addr_format_ip(const tp_addr_t *addr, char *buf, size_t size) {
    char ip[INET6_ADDRSTRLEN];
    if (size == 0)
        return buf;
    switch (addr->u.sa.sa_family) {
    case AF_INET: {
        size_t n = format_ipv4(&addr->u.in.sin_addr, ip);
        copy_str(buf, size, ip, n);
        break;
    }
    case AF_INET6:
        inet_ntop(AF_INET6, &addr->u.in6.sin6_addr, ip, sizeof(ip));
        if (addr->u.in6.sin6_scope_id)
            snprintf(buf, size, "%s%%%u", ip, (unsigned)addr->u.in6.sin6_scope_id);
        else
            copy_str(buf, size, ip, strlen(ip));
        break;
    default: copy_str(buf, size, "(no address)", 12); break;
    }
    return buf;
}

char *tp_addr_format(const tp_addr_t *addr, char *buf, size_t size) {
    char ip[TP_ADDR_STRLEN];
    if (size == 0)
        return buf;
    tp_addr_format_ip(addr, ip, sizeof(ip));
    switch (addr->u.sa.sa_family) {
    case AF_INET: snprintf(buf, size, "%s:%u", ip, (unsigned)tp_addr_port(addr)); break;
    case AF_INET6: snprintf(buf, size, "[%s]:%u", ip, (unsigned)tp_addr_port(addr)); break;
    default: snprintf(buf, size, "%s", ip); break;
    }
    return buf;
}

uint16_t tp_addr_port(const tp_addr_t *addr) {
    switch (addr->u.sa.sa_family) {
    case AF_INET: return ntohs(addr->u.in.sin_port);
    case AF_INET6: return ntohs(addr->u.in6.sin6_port);
    default: return 0;
    }
}

void tp_addr_set_port(tp_addr_t *addr, uint16_t port) {
    if (addr->u.sa.sa_family == AF_INET)
        addr->u.in.sin_port = htons(port);
    else if (addr->u.sa.sa_family == AF_INET6)
        addr->u.in6.sin6_port = htons(port);
}

socklen_t tp_addr_len(const tp_addr_t *addr) {
    switch (addr->u.sa.sa_family) {
    case AF_INET: return (socklen_t)sizeof(struct sockaddr_in);
    case AF_INET6: return (socklen_t)sizeof(struct sockaddr_in6);
    default: return 0;
    }
}

bool tp_addr_eq(const tp_addr_t *a, const tp_addr_t *b) {
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        return a->u.in.sin_port == b->u.in.sin_port &&
               a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
    case AF_INET6:
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    default: return false;
    }
}

/* ---- Special-purpose ranges ---------------------------------------------------------------- */

typedef struct prefix {
    uint8_t bytes[16];
    uint8_t bits;
} prefix_t;

static bool in_prefix(const uint8_t *ip, const prefix_t *p) {
    size_t full = p->bits / 8;
    if (memcmp(ip, p->bytes, full) != 0)
        return false;
    unsigned rest = p->bits % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip[full] & mask) == (p->bytes[full] & mask);
}

/* IANA IPv4 Special-Purpose Address Registry, the entries that are not globally reachable, plus
 * multicast and the reserved 240/4 (which includes the limited broadcast address). */
static const prefix_t special4[] = {
    {{0, 0, 0, 0}, 8},          /* "this network" */
    {{10}, 8},                  /* private */
    {{100, 64}, 10},            /* shared address space (CGNAT) */
    {{127}, 8},                 /* loopback */
    {{169, 254}, 16},           /* link-local */
    {{172, 16}, 12},            /* private */
    {{192, 0, 0}, 24},          /* IETF protocol assignments */
    {{192, 0, 2}, 24},          /* TEST-NET-1 */
    {{192, 88, 99}, 24},        /* deprecated 6to4 relay anycast */
    {{192, 168}, 16},           /* private */
    {{198, 18}, 15},            /* benchmarking */
    {{198, 51, 100}, 24},       /* TEST-NET-2 */
    {{203, 0, 113}, 24},        /* TEST-NET-3 */
    {{224}, 4},                 /* multicast */
    {{240}, 4},                 /* reserved */
    {{255, 255, 255, 255}, 32}, /* limited broadcast */
};

/* IANA IPv6 Special-Purpose Address Registry (the ranges that embed an IPv4 address are judged by
 * that address, below), plus link-local, unique-local and multicast. */
static const prefix_t special6[] = {
    {{0}, 96},                                  /* unspecified, loopback, IPv4-compatible */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48}, /* 64:ff9b:1::/48 local-use NAT64 */
    {{0x01, 0x00}, 64},                         /* 100::/64 discard-only */
    {{0x20, 0x01, 0x00, 0x00}, 23},             /* 2001::/23 IETF protocol assignments */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},             /* 2001:db8::/32 documentation */
    {{0x3f, 0xff, 0x00}, 20},                   /* 3fff::/20 documentation (RFC 9637) */
    {{0x5f, 0x00}, 16},                         /* 5f00::/16 SRv6 SIDs (RFC 9602) */
    {{0xfc}, 7},                                /* fc00::/7 unique-local */
    {{0xfe, 0x80}, 10},                         /* fe80::/10 link-local */
    {{0xff}, 8},                                /* ff00::/8 multicast */
};

static const prefix_t mapped4 = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96};
static const prefix_t nat64 = {{0x00, 0x64, 0xff, 0x9b}, 96}; /* 64:ff9b::/96 */
static const prefix_t sixtofour = {{0x20, 0x02}, 16};         /* 2002::/16 */

static bool special_ip4(const uint8_t *ip) {
    for (size_t i = 0; i < sizeof(special4) / sizeof(special4[0]); i++)
        if (in_prefix(ip, &special4[i]))
            return true;
    return false;
}

bool tp_addr_is_special(const tp_addr_t *addr) {
    if (addr->u.sa.sa_family == AF_INET)
        return special_ip4((const uint8_t *)&addr->u.in.sin_addr);
    if (addr->u.sa.sa_family != AF_INET6)
        return true; /* not an IP address at all: never a fine destination */
    const uint8_t *ip = addr->u.in6.sin6_addr.s6_addr;
    /* Ranges that carry an IPv4 address are exactly as special as that address. */
    if (in_prefix(ip, &mapped4) || in_prefix(ip, &nat64))
        return special_ip4(ip + 12);
    if (in_prefix(ip, &sixtofour))
        return special_ip4(ip + 2);
    for (size_t i = 0; i < sizeof(special6) / sizeof(special6[0]); i++)
        if (in_prefix(ip, &special6[i]))
            return true;
    return false;
}
