/* parse.c: PROXY protocol v1/v2 headers: a strict sans-IO parser and the matching encoders. */
#include "proxyproto/parse.h"
#include "util/fmt.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    V2_FIXED = 16,     /* signature, version/command, family/transport, length */
    V2_INET_LEN = 12,  /* two IPv4 addresses and two ports */
    V2_INET6_LEN = 36, /* two IPv6 addresses and two ports */
    V2_UNIX_LEN = 216, /* two 108-byte paths */
    TLV_HDR = 3,       /* type and 16-bit length */
    SSL_HDR = 5,       /* client flags and 32-bit verify, before the sub-TLVs */
    UNIQUE_ID_MAX = 128,
    V1_ADDR4_MAX = 15, /* "255.255.255.255" */
    V1_ADDR6_MAX = 45, /* INET6_ADDRSTRLEN - 1: "ffff:...:ffff:255.255.255.255" */
};

/*
 * Reasons are static strings, so the ones that name a number come from tables the preprocessor
 * writes: one string per possible value keeps the reason exact without a buffer to format into.
 */
#define H16(pre, hi, post)                                                                         \
    pre hi "0" post, pre hi "1" post, pre hi "2" post, pre hi "3" post, pre hi "4" post,           \
        pre hi "5" post, pre hi "6" post, pre hi "7" post, pre hi "8" post, pre hi "9" post,       \
        pre hi "a" post, pre hi "b" post, pre hi "c" post, pre hi "d" post, pre hi "e" post,       \
        pre hi "f" post
#define H256(pre, post)                                                                            \
    H16(pre, "0", post), H16(pre, "1", post), H16(pre, "2", post), H16(pre, "3", post),            \
        H16(pre, "4", post), H16(pre, "5", post), H16(pre, "6", post), H16(pre, "7", post),        \
        H16(pre, "8", post), H16(pre, "9", post), H16(pre, "a", post), H16(pre, "b", post),        \
        H16(pre, "c", post), H16(pre, "d", post), H16(pre, "e", post), H16(pre, "f", post)
#define SHORT1(tens, unit, fam) "v2 length " #tens #unit " too short for " fam
#define SHORT10(tens, fam)                                                                         \
    SHORT1(tens, 0, fam), SHORT1(tens, 1, fam), SHORT1(tens, 2, fam), SHORT1(tens, 3, fam),        \
        SHORT1(tens, 4, fam), SHORT1(tens, 5, fam), SHORT1(tens, 6, fam), SHORT1(tens, 7, fam),    \
        SHORT1(tens, 8, fam), SHORT1(tens, 9, fam)

static const char *const bad_version[16] = {H16("unsupported v2 version 0x", "", "")};
static const char *const bad_command[16] = {H16("unknown v2 command 0x", "", "")};
static const char *const bad_family[16] = {H16("unknown v2 address family 0x", "", "")};
static const char *const bad_transport[16] = {H16("unknown v2 transport 0x", "", "")};
static const char *const tlv_overrun[256] = {H256("TLV 0x", " overruns the header")};
static const char *const short_inet[20] = {SHORT10(, "AF_INET"), SHORT10(1, "AF_INET")};
static const char *const short_inet6[40] = {SHORT10(, "AF_INET6"), SHORT10(1, "AF_INET6"),
                                            SHORT10(2, "AF_INET6"), SHORT10(3, "AF_INET6")};
static const char *const short_unix[220] = {
    SHORT10(, "AF_UNIX"),   SHORT10(1, "AF_UNIX"),  SHORT10(2, "AF_UNIX"),  SHORT10(3, "AF_UNIX"),
    SHORT10(4, "AF_UNIX"),  SHORT10(5, "AF_UNIX"),  SHORT10(6, "AF_UNIX"),  SHORT10(7, "AF_UNIX"),
    SHORT10(8, "AF_UNIX"),  SHORT10(9, "AF_UNIX"),  SHORT10(10, "AF_UNIX"), SHORT10(11, "AF_UNIX"),
    SHORT10(12, "AF_UNIX"), SHORT10(13, "AF_UNIX"), SHORT10(14, "AF_UNIX"), SHORT10(15, "AF_UNIX"),
    SHORT10(16, "AF_UNIX"), SHORT10(17, "AF_UNIX"), SHORT10(18, "AF_UNIX"), SHORT10(19, "AF_UNIX"),
    SHORT10(20, "AF_UNIX"), SHORT10(21, "AF_UNIX"),
};

/* CRC32C, reflected polynomial 0x82F63B78, four bits per step: the table of the 16 remainders. */
static const uint32_t crc32c_nibble[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

uint32_t tp__pp_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc32c_nibble[crc & 15];
        crc = (crc >> 4) ^ crc32c_nibble[crc & 15];
    }
    return ~crc;
}

static int fail(const char **reason, int err, const char *why) {
    if (reason)
        *reason = why;
    return err;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, size_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static tp_str_t view(const uint8_t *p, size_t n) { return (tp_str_t){(const char *)p, n}; }

/* ---- v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" ---- */

/* A v1 line being read: b[0..n) is what may be looked at (at most 107 bytes). */
typedef struct v1 {
    const uint8_t *b;
    size_t n;
    bool capped; /* n stopped at the 107-byte limit: running out is then an error */
    const char **reason;
} v1_t;

enum { V1_DONE = 1 }; /* a field parsed; 0 is "more bytes", negative an error */

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static bool is_v4_char(uint8_t c) { return is_digit(c) || c == '.'; }
static bool is_v6_char(uint8_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

/* The first index from i on whose byte does not satisfy ok, or n. */
static size_t span(const uint8_t *b, size_t i, size_t n, bool (*ok)(uint8_t)) {
    while (i < n && ok(b[i]))
        i++;
    return i;
}

/* The bytes ran out in the middle of the line: wait for more, unless 107 bytes are already in. */
static int v1_more(const v1_t *v) {
    if (v->capped)
        return fail(v->reason, TP_ERR_TOO_LARGE, "v1 line longer than 107 bytes");
    return 0;
}

/* Judges the byte b[end] that ended a field followed by other fields (a space is expected). */
static int v1_sep(const v1_t *v, size_t end, size_t flen, const char *bad) {
    uint8_t t = v->b[end];
    if (t == ' ')
        return flen ? V1_DONE
                    : fail(v->reason, TP_ERR_PROTOCOL,
                           "v1 fields must be separated by single spaces");
    if (t == '\r' || t == '\n')
        return fail(v->reason, TP_ERR_PROTOCOL, "v1 line has too few fields");
    return fail(v->reason, TP_ERR_PROTOCOL, bad);
}

/*
 * Dotted-quad IPv4 as the spec wants it: four decimal numbers 0..255 without leading zeros. With
 * complete false, only checks that s can still become one.
 */
static bool v4_parse(const uint8_t *s, size_t n, bool complete, struct in_addr *out) {
    uint8_t q[4];
    unsigned octets = 0, val = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (digits == 0 || octets == 3)
                return false;
            q[octets++] = (uint8_t)val;
            val = digits = 0;
            continue;
        }
        if (!is_digit(s[i]) || (digits == 1 && val == 0))
            return false;
        val = val * 10 + (unsigned)(s[i] - '0');
        digits++;
        if (val > 255)
            return false;
    }
    if (!complete)
        return true;
    if (digits == 0 || octets != 3)
        return false;
    q[3] = (uint8_t)val;
    memcpy(out, q, 4);
    return true;
}

/* Reads the address field at *i into a (port left 0); it must be followed by a space. */
static int v1_addr(v1_t *v, size_t *i, bool v6, bool is_src, tp_addr_t *a) {
    const char *bad =
        v6 ? (is_src ? "v1 bad source IPv6 address" : "v1 bad destination IPv6 address")
           : (is_src ? "v1 bad source IPv4 address" : "v1 bad destination IPv4 address");
    size_t start = *i;
    size_t end = span(v->b, start, v->n, v6 ? is_v6_char : is_v4_char);
    size_t flen = end - start;
    if (flen > (v6 ? V1_ADDR6_MAX : V1_ADDR4_MAX))
        return fail(v->reason, TP_ERR_PROTOCOL, bad);
    if (end == v->n) {
        if (!v6 && !v4_parse(v->b + start, flen, false, NULL))
            return fail(v->reason, TP_ERR_PROTOCOL, bad);
        return v1_more(v);
    }
    int rc = v1_sep(v, end, flen, bad);
    if (rc != V1_DONE)
        return rc;
    if (v6) {
        char text[V1_ADDR6_MAX + 1];
        memcpy(text, v->b + start, flen);
        text[flen] = '\0';
        if (inet_pton(AF_INET6, text, &a->u.in6.sin6_addr) != 1)
            return fail(v->reason, TP_ERR_PROTOCOL, bad);
        a->u.in6.sin6_family = AF_INET6;
    } else {
        if (!v4_parse(v->b + start, flen, true, &a->u.in.sin_addr))
            return fail(v->reason, TP_ERR_PROTOCOL, bad);
        a->u.in.sin_family = AF_INET;
    }
    *i = end + 1;
    return V1_DONE;
}

/* Checks the digits of a port, complete or still arriving: no leading zero, at most 65535. */
static int v1_port_digits(const v1_t *v, const uint8_t *s, size_t n, uint16_t *port) {
    if (n > 1 && s[0] == '0')
        return fail(v->reason, TP_ERR_PROTOCOL, "v1 port has a leading zero");
    unsigned val = 0;
    for (size_t i = 0; i < n; i++) {
        val = val * 10 + (unsigned)(s[i] - '0');
        if (val > 65535)
            return fail(v->reason, TP_ERR_PROTOCOL, "v1 port out of range");
    }
    *port = (uint16_t)val;
    return V1_DONE;
}

/* Reads the port field at *i; the last one ends the line with CRLF, the other with a space. */
static int v1_port(v1_t *v, size_t *i, bool last, tp_addr_t *a) {
    static const char bad[] = "v1 port is not a decimal number";
    size_t start = *i;
    size_t end = span(v->b, start, v->n, is_digit);
    size_t flen = end - start;
    uint16_t port = 0;
    int rc = v1_port_digits(v, v->b + start, flen, &port);
    if (rc != V1_DONE)
        return rc;
    if (end == v->n)
        return v1_more(v);
    if (!last) {
        rc = v1_sep(v, end, flen, bad);
        if (rc != V1_DONE)
            return rc;
        *i = end + 1;
    } else {
        uint8_t t = v->b[end];
        if (t == ' ')
            return fail(v->reason, TP_ERR_PROTOCOL,
                        flen ? "v1 line has too many fields"
                             : "v1 fields must be separated by single spaces");
        if (t == '\n')
            return fail(v->reason, TP_ERR_PROTOCOL, "v1 needs CRLF");
        if (t != '\r')
            return fail(v->reason, TP_ERR_PROTOCOL, bad);
        if (flen == 0)
            return fail(v->reason, TP_ERR_PROTOCOL, "v1 line has too few fields");
        if (end + 1 == v->n)
            return v1_more(v);
        if (v->b[end + 1] != '\n')
            return fail(v->reason, TP_ERR_PROTOCOL, "v1 needs CRLF");
        *i = end + 2;
    }
    tp_addr_set_port(a, port);
    return V1_DONE;
}

static bool is_prefix(const uint8_t *s, size_t n, const char *word) {
    return n <= strlen(word) && memcmp(s, word, n) == 0;
}

static bool is_word_char(uint8_t c) { return c != ' ' && c != '\r' && c != '\n'; }

/* Parses a v1 line; buf starts with (a prefix of) "PROXY". */
static int parse_v1(const uint8_t *buf, size_t len, tp_proxy_header_t *out, const char **reason) {
    v1_t v = {buf, len < TP_PP_V1_MAX_LEN ? len : TP_PP_V1_MAX_LEN, len >= TP_PP_V1_MAX_LEN,
              reason};
    size_t i = 5;
    if (v.n <= i)
        return v1_more(&v);
    if (buf[i] != ' ')
        return fail(reason, TP_ERR_PROTOCOL, "v1 needs a single space after PROXY");
    i++;

    static const char bad_proto[] = "v1 protocol is not TCP4, TCP6 or UNKNOWN";
    size_t end = span(buf, i, v.n, is_word_char);
    const uint8_t *w = buf + i;
    size_t wlen = end - i;
    if (!is_prefix(w, wlen, "TCP4") && !is_prefix(w, wlen, "TCP6") &&
        !is_prefix(w, wlen, "UNKNOWN"))
        return fail(reason, TP_ERR_PROTOCOL, bad_proto);
    if (end == v.n)
        return v1_more(&v);
    if (wlen == 0 && buf[end] == ' ')
        return fail(reason, TP_ERR_PROTOCOL, "v1 fields must be separated by single spaces");

    out->version = 1;
    out->command = TP_PP_CMD_PROXY;
    if (wlen == 7) { /* UNKNOWN (the only 7-byte word left): anything may follow, up to CRLF */
        for (size_t j = end; j < v.n; j++) {
            if (buf[j] == '\n')
                return fail(reason, TP_ERR_PROTOCOL, "v1 needs CRLF");
            if (buf[j] == '\r') {
                if (j + 1 == v.n)
                    return v1_more(&v);
                if (buf[j + 1] != '\n')
                    return fail(reason, TP_ERR_PROTOCOL, "v1 needs CRLF");
                return (int)(j + 2);
            }
        }
        return v1_more(&v);
    }
    if (wlen != 4 || w[0] != 'T') /* "TCP4", "TCP6"; not "UNKN" */
        return fail(reason, TP_ERR_PROTOCOL, bad_proto);
    if (buf[end] != ' ')
        return fail(reason, TP_ERR_PROTOCOL, "v1 line has too few fields");
    i = end + 1;

    bool v6 = w[3] == '6';
    out->family = v6 ? TP_PP_FAMILY_INET6 : TP_PP_FAMILY_INET;
    out->transport = TP_PP_TRANSPORT_STREAM;
    int rc;
    if ((rc = v1_addr(&v, &i, v6, true, &out->src)) != V1_DONE ||
        (rc = v1_addr(&v, &i, v6, false, &out->dst)) != V1_DONE ||
        (rc = v1_port(&v, &i, false, &out->src)) != V1_DONE ||
        (rc = v1_port(&v, &i, true, &out->dst)) != V1_DONE)
        return rc;
    return (int)i;
}

/* ---- v2: the binary header ---- */

/* A UNIX socket path in its 108-byte field: up to the first NUL (after the first byte, which is
 * NUL for a Linux abstract socket); an all-zero field is empty. */
static tp_str_t unix_path(const uint8_t *p) {
    const size_t cap = V2_UNIX_LEN / 2;
    const uint8_t *nul = memchr(p + 1, 0, cap - 1);
    size_t n = nul ? (size_t)(nul - p) : cap;
    if (n == 1 && p[0] == 0)
        n = 0;
    return view(p, n);
}

/* The SSL TLV: client flags, verify result, then sub-TLVs. */
static int parse_ssl(const uint8_t *p, size_t n, tp_pp_ssl_t *ssl, const char **reason) {
    if (n < SSL_HDR)
        return fail(reason, TP_ERR_PROTOCOL, "SSL TLV shorter than 5 bytes");
    bool first = !ssl->present;
    if (first) {
        ssl->present = true;
        ssl->client = p[0];
        ssl->verify = get32(p + 1);
    }
    for (size_t off = SSL_HDR; off < n;) {
        if (n - off < TLV_HDR || get16(p + off + 1) > n - off - TLV_HDR)
            return fail(reason, TP_ERR_PROTOCOL, "SSL sub-TLV overruns the SSL TLV");
        size_t vlen = get16(p + off + 1);
        tp_str_t val = view(p + off + TLV_HDR, vlen);
        tp_str_t *slot = NULL;
        switch (p[off]) {
        case TP_PP_SSL_VERSION: slot = &ssl->version; break;
        case TP_PP_SSL_CN: slot = &ssl->cn; break;
        case TP_PP_SSL_CIPHER: slot = &ssl->cipher; break;
        case TP_PP_SSL_SIG_ALG: slot = &ssl->sig_alg; break;
        case TP_PP_SSL_KEY_ALG: slot = &ssl->key_alg; break;
        default: break; /* sub-types this parser does not know are skipped */
        }
        if (first && slot && !slot->ptr)
            *slot = val;
        off += TLV_HDR + vlen;
    }
    return 0;
}

typedef struct v2 {
    const uint8_t *b;
    size_t avail; /* bytes in hand, at most the header's length */
    size_t total; /* the header's length */
    tp_proxy_header_t *out;
    tp_pp_tlv_t *tlvs;
    size_t cap;
    size_t crc_at; /* offset of the CRC32C value, 0 if none */
    const char **reason;
} v2_t;

/* Checks and records one complete TLV. */
static int v2_tlv(v2_t *v, uint8_t type, const uint8_t *p, size_t n) {
    tp_proxy_header_t *h = v->out;
    tp_str_t val = view(p, n);
    int rc;
    switch (type) {
    case TP_PP_TLV_NOOP: return 0;
    case TP_PP_TLV_CRC32C:
        if (n != 4)
            return fail(v->reason, TP_ERR_PROTOCOL, "CRC32C TLV is not 4 bytes long");
        if (v->crc_at)
            return fail(v->reason, TP_ERR_PROTOCOL, "more than one CRC32C TLV");
        v->crc_at = (size_t)(p - v->b);
        h->crc32c_present = true;
        break;
    case TP_PP_TLV_ALPN:
        if (!h->alpn.ptr)
            h->alpn = val;
        break;
    case TP_PP_TLV_AUTHORITY:
        if (!h->authority.ptr)
            h->authority = val;
        break;
    case TP_PP_TLV_UNIQUE_ID:
        if (n > UNIQUE_ID_MAX)
            return fail(v->reason, TP_ERR_PROTOCOL, "UNIQUE_ID TLV longer than 128 bytes");
        if (!h->unique_id.ptr)
            h->unique_id = val;
        break;
    case TP_PP_TLV_NETNS:
        if (!h->netns.ptr)
            h->netns = val;
        break;
    case TP_PP_TLV_SSL:
        if ((rc = parse_ssl(p, n, &h->ssl, v->reason)) < 0)
            return rc;
        break;
    default: break;
    }
    if (v->cap) {
        if (h->ntlvs == v->cap)
            return fail(v->reason, TP_ERR_TOO_LARGE, "more TLVs than the caller's tlv_cap");
        v->tlvs[h->ntlvs++] = (tp_pp_tlv_t){type, val};
    }
    return 0;
}

/*
 * Walks the TLVs from off to the end of the header. Bounds are judged against the announced
 * length as soon as a TLV's own header is in, so an overrun fails before the bytes arrive.
 * Returns 1 when all are in and valid, 0 for more bytes, or an error.
 */
static int v2_tlvs(v2_t *v, size_t off) {
    while (off < v->total) {
        if (off == v->avail)
            return 0;
        uint8_t type = v->b[off];
        if (v->total - off < TLV_HDR)
            return fail(v->reason, TP_ERR_PROTOCOL, tlv_overrun[type]);
        if (v->avail - off < TLV_HDR)
            return 0;
        size_t n = get16(v->b + off + 1);
        if (n > v->total - off - TLV_HDR)
            return fail(v->reason, TP_ERR_PROTOCOL, tlv_overrun[type]);
        if (n > v->avail - off - TLV_HDR)
            return 0;
        int rc = v2_tlv(v, type, v->b + off + TLV_HDR, n);
        if (rc < 0)
            return rc;
        off += TLV_HDR + n;
    }
    return 1;
}

/* The CRC32C of the header with its CRC field taken as zero. */
static uint32_t v2_crc(const v2_t *v) {
    static const uint8_t zero[4] = {0};
    uint32_t crc = tp__pp_crc32c(0, v->b, v->crc_at);
    crc = tp__pp_crc32c(crc, zero, sizeof(zero));
    return tp__pp_crc32c(crc, v->b + v->crc_at + 4, v->total - v->crc_at - 4);
}

/* Parses a v2 header; buf starts with (a prefix of) the signature. */
static int parse_v2(const uint8_t *buf, size_t len, size_t max, tp_proxy_header_t *out,
                    tp_pp_tlv_t *tlvs, size_t cap, const char **reason) {
    if (len < 13)
        return 0;
    unsigned version = buf[12] >> 4, command = buf[12] & 15;
    if (version != 2)
        return fail(reason, TP_ERR_PROTOCOL, bad_version[version]);
    if (command > TP_PP_CMD_PROXY)
        return fail(reason, TP_ERR_PROTOCOL, bad_command[command]);
    if (len < 14)
        return 0;
    unsigned family = buf[13] >> 4, transport = buf[13] & 15;
    if (family > TP_PP_FAMILY_UNIX)
        return fail(reason, TP_ERR_PROTOCOL, bad_family[family]);
    if (transport > TP_PP_TRANSPORT_DGRAM)
        return fail(reason, TP_ERR_PROTOCOL, bad_transport[transport]);
    if ((family == TP_PP_FAMILY_UNSPEC) != (transport == TP_PP_TRANSPORT_UNSPEC))
        return fail(reason, TP_ERR_PROTOCOL,
                    "v2 family and transport must be both unspecified or both set");
    if (len < V2_FIXED)
        return 0;
    size_t alen = get16(buf + 14);
    size_t total = V2_FIXED + alen;
    if (total > max)
        return fail(reason, TP_ERR_TOO_LARGE, "v2 header longer than the configured limit");
    size_t need = family == TP_PP_FAMILY_INET    ? V2_INET_LEN
                  : family == TP_PP_FAMILY_INET6 ? V2_INET6_LEN
                  : family == TP_PP_FAMILY_UNIX  ? V2_UNIX_LEN
                                                 : 0;
    if (alen < need)
        return fail(reason, TP_ERR_PROTOCOL,
                    family == TP_PP_FAMILY_INET    ? short_inet[alen]
                    : family == TP_PP_FAMILY_INET6 ? short_inet6[alen]
                                                   : short_unix[alen]);
    size_t avail = len < total ? len : total;
    if (avail < V2_FIXED + need)
        return 0;

    out->version = 2;
    out->command = (tp_pp_command_t)command;
    out->family = (tp_pp_family_t)family;
    out->transport = (tp_pp_transport_t)transport;
    const uint8_t *a = buf + V2_FIXED;
    switch (family) {
    case TP_PP_FAMILY_INET:
        out->src.u.in.sin_family = out->dst.u.in.sin_family = AF_INET;
        memcpy(&out->src.u.in.sin_addr, a, 4);
        memcpy(&out->dst.u.in.sin_addr, a + 4, 4);
        memcpy(&out->src.u.in.sin_port, a + 8, 2);
        memcpy(&out->dst.u.in.sin_port, a + 10, 2);
        break;
    case TP_PP_FAMILY_INET6:
        out->src.u.in6.sin6_family = out->dst.u.in6.sin6_family = AF_INET6;
        memcpy(&out->src.u.in6.sin6_addr, a, 16);
        memcpy(&out->dst.u.in6.sin6_addr, a + 16, 16);
        memcpy(&out->src.u.in6.sin6_port, a + 32, 2);
        memcpy(&out->dst.u.in6.sin6_port, a + 34, 2);
        break;
    case TP_PP_FAMILY_UNIX:
        out->src_path = unix_path(a);
        out->dst_path = unix_path(a + V2_UNIX_LEN / 2);
        break;
    default: break;
    }

    v2_t v = {buf, avail, total, out, tlvs, cap, 0, reason};
    out->tlvs = cap ? tlvs : NULL;
    int rc = v2_tlvs(&v, V2_FIXED + need);
    if (rc <= 0)
        return rc;
    if (v.crc_at) {
        if (v2_crc(&v) != get32(buf + v.crc_at))
            return fail(reason, TP_ERR_PROTOCOL, "CRC32C mismatch");
        out->crc32c_verified = true;
    }
    return (int)total;
}

int tp__pp_parse(const uint8_t *buf, size_t len, unsigned accept, size_t max_v2,
                 tp_proxy_header_t *out, tp_pp_tlv_t *tlv_storage, size_t tlv_cap,
                 const char **reason) {
    if (reason)
        *reason = NULL;
    if (!out || (!buf && len) || !(accept & (TP_PP_V1 | TP_PP_V2)) || (tlv_cap && !tlv_storage))
        return fail(reason, TP_ERR_INVAL, "invalid arguments");
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return 0;
    if (max_v2 == 0)
        max_v2 = TP_PP_V2_DEFAULT_MAX;
    else if (max_v2 > TP_PP_V2_MAX_LEN)
        max_v2 = TP_PP_V2_MAX_LEN;

    /* The first byte tells the versions apart; each is then checked as far as bytes go. */
    if (buf[0] == v2_sig[0]) {
        size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
        if (!(accept & TP_PP_V2))
            return fail(reason, TP_ERR_PROTOCOL,
                        memcmp(buf, v2_sig, n) == 0 ? "PROXY v2 header where only v1 is accepted"
                                                    : "not a PROXY protocol header");
        if (memcmp(buf, v2_sig, n) != 0)
            return fail(reason, TP_ERR_PROTOCOL, "bad v2 signature");
        return parse_v2(buf, len, max_v2, out, tlv_storage, tlv_cap, reason);
    }
    if (buf[0] == 'P') {
        size_t n = len < 5 ? len : 5;
        if (!(accept & TP_PP_V1))
            return fail(reason, TP_ERR_PROTOCOL,
                        memcmp(buf, "PROXY", n) == 0 ? "PROXY v1 header where only v2 is accepted"
                                                     : "not a PROXY protocol header");
        if (memcmp(buf, "PROXY", n) != 0)
            return fail(reason, TP_ERR_PROTOCOL, "bad v1 signature");
        return parse_v1(buf, len, out, reason);
    }
    return fail(reason, TP_ERR_PROTOCOL, "not a PROXY protocol header");
}

tp_str_t tp_proxy_header_tlv(const tp_proxy_header_t *header, uint8_t type) {
    if (header)
        for (size_t i = 0; i < header->ntlvs; i++)
            if (header->tlvs[i].type == type)
                return header->tlvs[i].value;
    return (tp_str_t){NULL, 0};
}

/* ---- encoders ---- */

/* The family both addresses share, AF_UNSPEC when both are NULL, or -1 when they do not match. */
static int pair_family(const tp_addr_t *src, const tp_addr_t *dst) {
    if (!src && !dst)
        return AF_UNSPEC;
    if (!src || !dst || src->u.sa.sa_family != dst->u.sa.sa_family)
        return -1;
    if (src->u.sa.sa_family != AF_INET && src->u.sa.sa_family != AF_INET6)
        return -1;
    return src->u.sa.sa_family;
}

/* Appends the IP of a as text; line has room for INET6_ADDRSTRLEN bytes at n. */
static size_t fmt_ip(char *p, const tp_addr_t *a) {
    const void *ip = a->u.sa.sa_family == AF_INET ? (const void *)&a->u.in.sin_addr
                                                  : (const void *)&a->u.in6.sin6_addr;
    if (!inet_ntop(a->u.sa.sa_family, ip, p, INET6_ADDRSTRLEN))
        return 0;
    return strlen(p);
}

int tp__pp_encode_v1(char *out, size_t cap, const tp_addr_t *src, const tp_addr_t *dst) {
    int family = pair_family(src, dst);
    if (!out || family < 0)
        return TP_ERR_INVAL;
    /* Room for the longest line inet_ntop can produce, checked against the limit below. */
    char line[16 + 2 * INET6_ADDRSTRLEN + 16];
    size_t n;
    if (family == AF_UNSPEC) {
        static const char unknown[] = "PROXY UNKNOWN\r\n";
        n = sizeof(unknown) - 1;
        memcpy(line, unknown, n);
    } else {
        memcpy(line, family == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ", 11);
        n = 11;
        size_t ip = fmt_ip(line + n, src);
        if (ip == 0)
            return TP_ERR_INVAL;
        n += ip;
        line[n++] = ' ';
        if ((ip = fmt_ip(line + n, dst)) == 0)
            return TP_ERR_INVAL;
        n += ip;
        line[n++] = ' ';
        n += tp__fmt_u64(line + n, tp_addr_port(src));
        line[n++] = ' ';
        n += tp__fmt_u64(line + n, tp_addr_port(dst));
        line[n++] = '\r';
        line[n++] = '\n';
    }
    if (n > TP_PP_V1_MAX_LEN)
        return TP_ERR_RANGE; /* not reachable with inet_ntop's forms, kept as a guard */
    if (n > cap)
        return TP_ERR_TOO_LARGE;
    memcpy(out, line, n);
    if (n < cap)
        out[n] = '\0';
    return (int)n;
}

int tp__pp_encode_v2(uint8_t *out, size_t cap, int command, const tp_addr_t *src,
                     const tp_addr_t *dst, const tp_pp_tlv_t *tlvs, size_t ntlvs, bool add_crc32c) {
    int family = pair_family(src, dst);
    if (!out || family < 0 || (command != TP_PP_CMD_LOCAL && command != TP_PP_CMD_PROXY) ||
        (ntlvs && !tlvs))
        return TP_ERR_INVAL;
    size_t alen = family == AF_INET ? V2_INET_LEN : family == AF_INET6 ? V2_INET6_LEN : 0;
    size_t total = V2_FIXED + alen + (add_crc32c ? TLV_HDR + 4 : 0);
    for (size_t i = 0; i < ntlvs; i++) {
        if (tlvs[i].type == TP_PP_TLV_CRC32C || tlvs[i].value.len > 65535 ||
            (tlvs[i].value.len && !tlvs[i].value.ptr))
            return TP_ERR_INVAL;
        total += TLV_HDR + tlvs[i].value.len;
        if (total > TP_PP_V2_MAX_LEN)
            return TP_ERR_TOO_LARGE;
    }
    if (total > TP_PP_V2_MAX_LEN || total > cap)
        return TP_ERR_TOO_LARGE;

    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = (uint8_t)(0x20 | command);
    out[13] = family == AF_INET    ? (TP_PP_FAMILY_INET << 4 | TP_PP_TRANSPORT_STREAM)
              : family == AF_INET6 ? (TP_PP_FAMILY_INET6 << 4 | TP_PP_TRANSPORT_STREAM)
                                   : 0;
    put16(out + 14, total - V2_FIXED);
    uint8_t *p = out + V2_FIXED;
    if (family == AF_INET) {
        memcpy(p, &src->u.in.sin_addr, 4);
        memcpy(p + 4, &dst->u.in.sin_addr, 4);
        memcpy(p + 8, &src->u.in.sin_port, 2);
        memcpy(p + 10, &dst->u.in.sin_port, 2);
    } else if (family == AF_INET6) {
        memcpy(p, &src->u.in6.sin6_addr, 16);
        memcpy(p + 16, &dst->u.in6.sin6_addr, 16);
        memcpy(p + 32, &src->u.in6.sin6_port, 2);
        memcpy(p + 34, &dst->u.in6.sin6_port, 2);
    }
    p += alen;
    uint8_t *crc = NULL;
    if (add_crc32c) {
        p[0] = TP_PP_TLV_CRC32C;
        put16(p + 1, 4);
        crc = p + TLV_HDR;
        memset(crc, 0, 4);
        p += TLV_HDR + 4;
    }
    for (size_t i = 0; i < ntlvs; i++) {
        p[0] = tlvs[i].type;
        put16(p + 1, tlvs[i].value.len);
        if (tlvs[i].value.len)
            memcpy(p + TLV_HDR, tlvs[i].value.ptr, tlvs[i].value.len);
        p += TLV_HDR + tlvs[i].value.len;
    }
    if (crc) {
        uint32_t c = tp__pp_crc32c(0, out, total);
        crc[0] = (uint8_t)(c >> 24);
        crc[1] = (uint8_t)(c >> 16);
        crc[2] = (uint8_t)(c >> 8);
        crc[3] = (uint8_t)c;
    }
    return (int)total;
}
