/* cidr.c: sets of IPv4 and IPv6 prefixes, for allow and deny lists of destinations and clients. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/common.h"

/* The longest prefix text accepted: a full IPv6 address with an embedded IPv4 tail and "/128". */
#define PREFIX_MAX 64

typedef struct cidr {
    bool v6;
    uint8_t bits;
    uint8_t bytes[16]; /* IPv4 in the first 4 */
} cidr_t;

struct tp_cidr_set {
    cidr_t *items;
    size_t n, cap;
};

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool match(const uint8_t *ip, const cidr_t *c) {
    size_t full = c->bits / 8;
    if (memcmp(ip, c->bytes, full) != 0)
        return false;
    unsigned rest = c->bits % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip[full] & mask) == c->bytes[full];
}

/* True when no bit after the prefix length is set: "10.1.0.0/8" is refused rather than silently
 * widened, since an allow list that is broader than its author meant is a hole. */
static bool host_bits_clear(const cidr_t *c, size_t nbytes) {
    for (size_t i = 0; i < nbytes; i++) {
        unsigned from = (unsigned)i * 8;
        uint8_t keep = c->bits >= from + 8 ? 0xff
                       : c->bits <= from   ? 0
                                           : (uint8_t)(0xff << (8 - (c->bits - from)));
        if (c->bytes[i] & (uint8_t)~keep)
            return false;
    }
    return true;
}

static bool parse_prefix(const char *text, size_t len, cidr_t *out) {
    char buf[PREFIX_MAX];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        *slash++ = '\0';
        size_t nd = strlen(slash);
        if (nd == 0 || nd > 3)
            return false;
        bits = 0;
        for (size_t i = 0; i < nd; i++) {
            if (slash[i] < '0' || slash[i] > '9')
                return false;
            bits = bits * 10 + (slash[i] - '0');
        }
    }
    if (inet_pton(AF_INET, buf, out->bytes) == 1) {
        if (bits > 32)
            return false;
        out->bits = (uint8_t)(bits < 0 ? 32 : bits);
        return host_bits_clear(out, 4);
    }
    if (inet_pton(AF_INET6, buf, out->bytes) != 1 || bits > 128)
        return false;
    out->v6 = true;
    out->bits = (uint8_t)(bits < 0 ? 128 : bits);
    if (!host_bits_clear(out, 16))
        return false;
    /* ::ffff:a.b.c.d/96..128 is an IPv4 prefix written the IPv6 way: keep it as IPv4, the form
     * addresses are matched in. */
    if (out->bits >= 96 && memcmp(out->bytes, mapped_prefix, 12) == 0) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->bits = (uint8_t)(out->bits - 96);
        out->v6 = false;
    }
    return true;
}

static int add_parsed(tp_cidr_set_t *set, const cidr_t *c) {
    for (size_t i = 0; i < set->n; i++)
        if (memcmp(&set->items[i], c, sizeof(*c)) == 0)
            return 0;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4;
        cidr_t *items = realloc(set->items, cap * sizeof(*items));
        if (!items)
            return TP_ERR_NOMEM;
        set->items = items;
        set->cap = cap;
    }
    set->items[set->n++] = *c;
    return 0;
}

int tp_cidr_set_add(tp_cidr_set_t *set, const char *prefix) {
    cidr_t c;
    if (!set || !prefix || !parse_prefix(prefix, strlen(prefix), &c))
        return TP_ERR_INVAL;
    return add_parsed(set, &c);
}

static bool is_separator(char ch) {
    return ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

tp_cidr_set_t *tp_cidr_set_new(const char *text, const char **err_at) {
    if (err_at)
        *err_at = NULL;
    tp_cidr_set_t *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    const char *p = text ? text : "";
    while (*p) {
        if (is_separator(*p)) {
            p++;
            continue;
        }
        const char *start = p;
        while (*p && !is_separator(*p))
            p++;
        cidr_t c;
        int rc = parse_prefix(start, (size_t)(p - start), &c) ? add_parsed(set, &c) : TP_ERR_INVAL;
        if (rc != 0) {
            if (err_at && rc == TP_ERR_INVAL)
                *err_at = start;
            tp_cidr_set_del(set);
            return NULL;
        }
    }
    return set;
}

bool tp_cidr_set_contains(const tp_cidr_set_t *set, const tp_addr_t *addr) {
    if (!set)
        return false;
    const uint8_t *ip;
    bool v6;
    if (addr->u.sa.sa_family == AF_INET) {
        ip = (const uint8_t *)&addr->u.in.sin_addr;
        v6 = false;
    } else if (addr->u.sa.sa_family == AF_INET6) {
        ip = addr->u.in6.sin6_addr.s6_addr;
        v6 = true;
        if (memcmp(ip, mapped_prefix, 12) == 0) {
            ip += 12;
            v6 = false;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i].v6 == v6 && match(ip, &set->items[i]))
            return true;
    return false;
}

size_t tp_cidr_set_count(const tp_cidr_set_t *set) { return set ? set->n : 0; }

void tp_cidr_set_del(tp_cidr_set_t *set) {
    if (!set)
        return;
    free(set->items);
    free(set);
}
