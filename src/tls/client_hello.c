/* client_hello.c: reads SNI, ALPN and the offered versions from a ClientHello before GnuTLS does.
 */
#include <string.h>

#include "tls/client_hello.h"

enum {
    REC_HANDSHAKE = 22,
    HS_CLIENT_HELLO = 1,
    REC_HEADER = 5,
    REC_MAX = 16384 + 256, /* RFC 8446 5.1: 2^14 for plaintext; some slack for old stacks */
    EXT_SERVER_NAME = 0,
    EXT_ALPN = 16,
    EXT_SUPPORTED_VERSIONS = 43,
};

/* A bounds-checked reader over one byte range. */
typedef struct cur {
    const uint8_t *p;
    size_t n;
} cur_t;

static bool take(cur_t *c, size_t k, const uint8_t **out) {
    if (c->n < k)
        return false;
    if (out)
        *out = c->p;
    c->p += k;
    c->n -= k;
    return true;
}

static bool u8(cur_t *c, unsigned *v) {
    const uint8_t *p;
    if (!take(c, 1, &p))
        return false;
    *v = p[0];
    return true;
}

static bool u16(cur_t *c, unsigned *v) {
    const uint8_t *p;
    if (!take(c, 2, &p))
        return false;
    *v = (unsigned)p[0] << 8 | p[1];
    return true;
}

/* A length-prefixed vector (1 or 2 length bytes) as a sub-reader. */
static bool vec(cur_t *c, int lenbytes, cur_t *sub) {
    unsigned n;
    if (!(lenbytes == 1 ? u8(c, &n) : u16(c, &n)))
        return false;
    sub->p = c->p;
    sub->n = n;
    return take(c, n, NULL);
}

/* GREASE values (RFC 8701) are 0x?A?A with both bytes equal. */
static bool grease(unsigned v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static int bad(const char **reason, const char *why) {
    *reason = why;
    return TP_ERR_PROTOCOL;
}

static int parse_sni(cur_t ext, tp_tls_client_hello_t *out, const char **reason) {
    cur_t list;
    if (!vec(&ext, 2, &list) || ext.n != 0 || list.n == 0)
        return bad(reason, "malformed server_name extension");
    while (list.n) {
        unsigned type;
        cur_t name;
        if (!u8(&list, &type) || !vec(&list, 2, &name))
            return bad(reason, "malformed server_name extension");
        if (type != 0)
            continue; /* only host_name is defined; others are skipped (RFC 6066 3) */
        if (out->sni.ptr)
            return bad(reason, "two host names in server_name");
        if (name.n == 0 || name.n > 255)
            return bad(reason, "server_name host name is empty or longer than 255 bytes");
        for (size_t i = 0; i < name.n; i++)
            if (name.p[i] <= 0x20 || name.p[i] >= 0x7f)
                return bad(reason, "server_name host name holds a byte a DNS name cannot");
        out->sni = (tp_str_t){(const char *)name.p, name.n};
    }
    return 0;
}

static int parse_alpn(cur_t ext, tp_tls_client_hello_t *out, const char **reason) {
    cur_t list;
    if (!vec(&ext, 2, &list) || ext.n != 0 || list.n == 0)
        return bad(reason, "malformed ALPN extension");
    while (list.n) {
        cur_t proto;
        if (!vec(&list, 1, &proto) || proto.n == 0)
            return bad(reason, "malformed ALPN extension (empty or truncated protocol name)");
        if (out->nalpn < TP_TLS_HELLO_MAX_ALPN)
            out->alpn[out->nalpn++] = (tp_str_t){(const char *)proto.p, proto.n};
    }
    return 0;
}

static int parse_versions(cur_t ext, tp_tls_client_hello_t *out, const char **reason) {
    cur_t list;
    if (!vec(&ext, 1, &list) || ext.n != 0 || list.n < 2 || list.n % 2)
        return bad(reason, "malformed supported_versions extension");
    unsigned best = 0, v;
    while (u16(&list, &v))
        if (!grease(v) && v > best)
            best = v;
    if (best)
        out->max_version = (uint16_t)best;
    return 0;
}

/* The ClientHello body (after the 4-byte handshake header). */
static int parse_body(cur_t c, tp_tls_client_hello_t *out, const char **reason) {
    unsigned v;
    cur_t sid, suites, comp, exts;
    if (!u16(&c, &v) || !take(&c, 32, NULL))
        return bad(reason, "truncated ClientHello");
    out->legacy_version = (uint16_t)v;
    out->max_version = (uint16_t)v;
    if ((v >> 8) != 3)
        return bad(reason, "ClientHello version is not TLS");
    if (!vec(&c, 1, &sid) || sid.n > 32)
        return bad(reason, "malformed ClientHello session id");
    if (!vec(&c, 2, &suites) || suites.n < 2 || suites.n % 2)
        return bad(reason, "malformed ClientHello cipher suites");
    out->ncipher_suites = suites.n / 2;
    if (!vec(&c, 1, &comp) || comp.n < 1)
        return bad(reason, "malformed ClientHello compression methods");
    if (c.n == 0)
        return 0; /* no extensions: an old client (GnuTLS will judge its versions) */
    if (!vec(&c, 2, &exts) || c.n != 0)
        return bad(reason, "malformed ClientHello extensions");
    /* RFC 8446 4.2: no extension type twice. The three read here are tracked; GnuTLS checks the
     * rest. */
    bool seen_sni = false, seen_alpn = false, seen_ver = false;
    while (exts.n) {
        unsigned type;
        cur_t ext;
        if (!u16(&exts, &type) || !vec(&exts, 2, &ext))
            return bad(reason, "malformed ClientHello extension");
        int rc = 0;
        bool *seen = type == EXT_SERVER_NAME          ? &seen_sni
                     : type == EXT_ALPN               ? &seen_alpn
                     : type == EXT_SUPPORTED_VERSIONS ? &seen_ver
                                                      : NULL;
        if (!seen)
            continue;
        if (*seen)
            return bad(reason, "an extension appears twice in the ClientHello");
        *seen = true;
        if (type == EXT_SERVER_NAME)
            rc = parse_sni(ext, out, reason);
        else if (type == EXT_ALPN)
            rc = parse_alpn(ext, out, reason);
        else
            rc = parse_versions(ext, out, reason);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int tp__tls_hello_parse(const uint8_t *in, size_t len, uint8_t *scratch, size_t scratch_cap,
                        tp_tls_client_hello_t *out, const char **reason) {
    memset(out, 0, sizeof(*out));
    *reason = NULL;
    size_t off = 0;  /* the next record header in `in` */
    size_t got = 0;  /* handshake bytes collected so far (in scratch when split) */
    size_t need = 0; /* the whole message: 4 + its length, once known */
    const uint8_t *msg = NULL;
    uint8_t hdr[4] = {0}; /* the handshake header, which may itself be split */
    for (;;) {
        /* Judge what the record header shows as soon as it shows it. */
        if (len > off && in[off] != REC_HANDSHAKE)
            return bad(reason, off == 0 ? (in[0] & 0x80 ? "an SSLv2 ClientHello (SSL 2 is refused)"
                                                        : "not a TLS handshake record")
                                        : "a non-handshake record inside the ClientHello");
        if (len > off + 1 && in[off + 1] != 3)
            return bad(reason, "record version is not TLS");
        if (len < off + REC_HEADER)
            break;
        size_t rlen = (size_t)in[off + 3] << 8 | in[off + 4];
        if (rlen == 0 || rlen > REC_MAX)
            return bad(reason, "handshake record length is 0 or too large");
        const uint8_t *frag = in + off + REC_HEADER;
        size_t avail = len - off - REC_HEADER < rlen ? len - off - REC_HEADER : rlen;
        /* The handshake header: the first 4 bytes of the message, across records if need be. */
        for (size_t i = 0; got + i < 4 && i < avail; i++)
            hdr[got + i] = frag[i];
        size_t have = got + avail;
        if (have >= 1 && hdr[0] != HS_CLIENT_HELLO)
            return bad(reason, "the first handshake message is not a ClientHello");
        if (have >= 4 && !need) {
            size_t mlen = (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
            if (mlen + 4 > TP_TLS_HELLO_MAX) {
                *reason = "ClientHello larger than 64 KiB";
                return TP_ERR_TOO_LARGE;
            }
            if (mlen < 38)
                return bad(reason, "ClientHello too short");
            need = mlen + 4;
        }
        if (avail < rlen)
            break; /* a partial record: wait */
        if (off == 0 && need && rlen >= need) {
            msg = frag; /* the common case: one record holds it all, parsed in place */
            got = need;
        } else {
            if (!scratch || scratch_cap < (need ? need : got + rlen)) {
                *reason = "ClientHello split across records (reassembly buffer needed)";
                return TP_ERR_TOO_LARGE;
            }
            size_t k = need && rlen > need - got ? need - got : rlen;
            memcpy(scratch + got, frag, k);
            got += k;
            msg = scratch;
        }
        off += REC_HEADER + rlen;
        if (need && got >= need) {
            cur_t body = {msg + 4, need - 4};
            int rc = parse_body(body, out, reason);
            if (rc < 0) {
                memset(out, 0, sizeof(*out));
                return rc;
            }
            return (int)off;
        }
    }
    return 0;
}
