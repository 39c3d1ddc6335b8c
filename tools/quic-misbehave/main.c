/* quic-misbehave: a QUIC client that breaks the rules on purpose, to test a server's caps on
 * what a peer can make it hold (connection IDs, path challenges, CRYPTO data, streams, flow
 * control windows) and its checks on what a peer may retire. It is
 * built on ngtcp2 and GnuTLS directly, with its own poll() loop, not on Turnpike's runtime.
 *
 * How the bad frames get on the wire: after the handshake, the tool asks ngtcp2 to send a small
 * DATAGRAM, removes the header protection of the 1-RTT packet ngtcp2 wrote, decrypts it with the
 * client's 1-RTT key (derived from CLIENT_TRAFFIC_SECRET_0, taken from GnuTLS's key log), appends
 * the hand-made frames, encrypts it again with the same packet number and protects the header
 * (RFC 9001 5). The packet number stays ngtcp2's, so the server's ACKs make sense to ngtcp2,
 * and ngtcp2's ack_datagram / lost_datagram callbacks say which injected packets the server
 * accepted (processed and acknowledged) and which were lost. Injected packets are ACK-clocked:
 * at most --window of them unacknowledged at a time.
 *
 * Then the tool opens a stream, sends a pattern and checks the echo (quic-echo's ALPN by
 * default), and reports the server's reaction (its CONNECTION_CLOSE, if any) in one JSON line. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#define PKT_MAX        1200 /* every datagram sent, rewritten ones included */
#define ECHO_BYTES     4096
#define CRYPTO_CHUNK   1024       /* crypto-small: bytes per CRYPTO frame */
#define MAX_INJECTED   (1u << 22) /* injected packets remembered (bounds the ack table) */
#define MAX_COUNT      100000000ULL
#define MAX_WINDOW     1024
#define KEY_MAX        64
#define CLOSE_GRACE_MS 2000       /* after the echo: how long to wait for the last ACKs */
#define MAX_EXCESS     (1u << 20) /* flow-*: bytes past the window, at most */
#define MAX_FLOW_CONN  1000       /* flow-conn: streams it may spread its data over, at most */
#define MAX_DCIDS      16         /* retire-cid: active DCIDs looked at, at most */
#define PRIORITY                                                                                   \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-AES-128-CCM-8:-AES-256-CCM-8:%DISABLE_TLS13_COMPAT_MODE"

typedef enum abuse {
    ABUSE_NONE,
    ABUSE_CIDS,
    ABUSE_PATH_CHALLENGE,
    ABUSE_CRYPTO,
    ABUSE_CRYPTO_SMALL,
    ABUSE_STREAMS,
    ABUSE_STREAMS_UNI,
    ABUSE_FLOW_STREAM,
    ABUSE_FLOW_CONN,
    ABUSE_RETIRE_CID,
} abuse_t;

static const char *const ABUSE_NAMES[] = {
    "none",    "cids",        "path-challenge", "crypto",    "crypto-small",
    "streams", "streams-uni", "flow-stream",    "flow-conn", "retire-cid"};

/* The client's 1-RTT packet protection, as ngtcp2 has it, for rewriting its packets. */
typedef struct keys {
    bool ready;
    ngtcp2_crypto_ctx ctx;
    ngtcp2_crypto_aead_ctx enc, dec;
    bool enc_init, dec_init;
    gnutls_cipher_hd_t hp;
    gnutls_cipher_algorithm_t hp_alg;
    uint8_t iv[KEY_MAX];
    size_t ivlen;
} keys_t;

/* One injected packet: how many abusive frames it carried and what became of it. */
typedef struct injected {
    uint32_t frames;
    uint8_t state; /* 0 in flight, 1 acknowledged, 2 lost */
    uint64_t crypto_end;
} injected_t;

typedef struct client {
    int fd;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    ngtcp2_crypto_conn_ref ref;
    ngtcp2_path_storage ps;
    uint8_t ip_store[16];
    uint8_t secret[KEY_MAX];
    size_t secretlen;
    keys_t k;
    int64_t largest_pn; /* largest 1-RTT packet number sent, -1 before the first */
    uint64_t start_ns, deadline_ns;
    bool verbose;
    bool no_echo;

    abuse_t mode;
    uint64_t count;  /* abusive frames to inject (mode-dependent meaning) */
    uint64_t offset; /* crypto: the CRYPTO frame's offset */
    uint64_t window;
    uint64_t limit; /* the server's limit that the mode aims at, when known */
    int64_t stream_id;
    bool aimed;           /* the limit was read (once the handshake is confirmed) */
    uint64_t excess;      /* flow-*: bytes past the window (0: exactly up to it) */
    uint64_t data_end;    /* flow-*: the end offset (flow-conn: summed over its streams) */
    uint64_t stream_win;  /* flow-*: the server's window for client bidi streams */
    uint64_t streams_max; /* flow-*: the server's initial_max_streams_bidi (at most 2^60) */
    uint64_t retire_seq;  /* retire-cid: the sequence number retired */
    bool confirmed;
    bool injecting_done;
    uint64_t frames_planned; /* frames put into packets so far */
    uint64_t crypto_next;    /* crypto-small: offset of the next frame */
    injected_t *inj;
    size_t ninj, capinj;
    uint64_t pkts_injected, pkts_acked, pkts_lost, frames_injected, frames_acked;
    uint64_t crypto_end_acked, rewrite_skipped;

    bool echo_started, echo_fin_sent, echo_done, echo_mismatch;
    int64_t echo_sid;
    size_t echo_sent, echo_recv;
    uint64_t echo_done_ns;

    bool closed_by_peer, local_error, idle_closed;
    ngtcp2_ccerr ccerr;
    char reason[256];
    char error[256];
    bool done;
} client_t;

static uint8_t pattern[ECHO_BYTES];

static void usage(void) {
    fprintf(
        stderr,
        "usage: quic-misbehave HOST PORT --abuse MODE [--count N] [--offset O] [--window W]\n"
        "                     [--excess E] [--alpn ALPN] [--ca FILE | --insecure] [--sni NAME]\n"
        "                     [--timeout-ms T] [--no-echo] [--verbose]\n"
        "  MODE none           a well-behaved connection: handshake and an echo only\n"
        "       cids           N NEW_CONNECTION_ID frames (seq 100.., retire_prior_to 0;\n"
        "                      default 8): more than the server's active_connection_id_limit\n"
        "       path-challenge N PATH_CHALLENGE frames (default 1000000), about 130 a packet\n"
        "       crypto         one 1-RTT CRYPTO frame at offset O (default 1M)\n"
        "       crypto-small   N CRYPTO frames of %d bytes at offsets %d, %d, ... (default\n"
        "                      128), the bytes before them never sent, one packet at a time\n"
        "       streams        a STREAM frame opening the first bidi stream past the server's\n"
        "                      initial_max_streams_bidi\n"
        "       streams-uni    the same for client uni streams (ID 4 x initial_max_streams_uni\n"
        "                      + 2)\n"
        "       flow-stream    5 bytes on the last client bidi stream the server allows, ending\n"
        "                      E bytes (default 1) past its initial_max_stream_data_bidi_remote\n"
        "       flow-conn      1 byte on each of as many client bidi streams as it takes, each\n"
        "                      within its stream window, ending E bytes past initial_max_data\n"
        "                      in all (--excess 0: exactly up to the windows, a control)\n"
        "       retire-cid     RETIRE_CONNECTION_ID of a sequence number the server never issued\n"
        "                      (the tool's active_connection_id_limit, and above any it holds)\n"
        "  Then an echo on a new stream (quic-echo's ALPN tp-echo by default; --no-echo for\n"
        "  other servers, e.g. --alpn h3: wait for the ACKs, or a close, instead). Prints one\n"
        "  JSON line; exits 0 when the run went as designed (whatever the server did), 1 when\n"
        "  it could not (no handshake, timeout before the injection ended), 2 on bad usage.\n",
        CRYPTO_CHUNK, CRYPTO_CHUNK, 2 * CRYPTO_CHUNK);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno != 0 || s[0] == '-') {
        return false;
    }
    switch (*end) {
    case 'k':
    case 'K': v <<= 10, end++; break;
    case 'm':
    case 'M': v <<= 20, end++; break;
    default: break;
    }
    *out = v;
    return *end == '\0';
}

static void fail(client_t *cl, const char *what) {
    if (!cl->error[0]) {
        snprintf(cl->error, sizeof(cl->error), "%s", what);
    }
    cl->done = true;
}

/* ---------------- wire helpers (RFC 9000 16, 17.3, 19) ---------------- */

static size_t varint_len(uint64_t v) {
    return v < 64 ? 1 : v < 16384 ? 2 : v < (1ULL << 30) ? 4 : 8;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = varint_len(v);
    uint8_t prefix = n == 8 ? 0xc0 : n == 4 ? 0x80 : n == 2 ? 0x40 : 0; /* the length, 2 bits */
    p[0] = (uint8_t)(prefix | (uint8_t)(v >> (8 * (n - 1))));
    for (size_t i = 1; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    }
    return n;
}

static bool get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v) {
    if (*off >= len) {
        return false;
    }
    size_t n = (size_t)1 << (p[*off] >> 6);
    if (*off + n > len) {
        return false;
    }
    uint64_t x = p[*off] & 0x3f;
    for (size_t i = 1; i < n; i++) {
        x = x << 8 | p[*off + i];
    }
    *off += n;
    *v = x;
    return true;
}

/* RFC 9000 A.3: the full packet number from its truncated form. */
static int64_t decode_pn(int64_t largest, uint64_t truncated, size_t pnlen) {
    int64_t expected = largest + 1;
    int64_t win = (int64_t)1 << (pnlen * 8);
    int64_t hwin = win / 2;
    int64_t cand = (expected & ~(win - 1)) | (int64_t)truncated;
    if (cand <= expected - hwin && cand < ((int64_t)1 << 62) - win) {
        return cand + win;
    }
    if (cand > expected + hwin && cand >= win) {
        return cand - win;
    }
    return cand;
}

/* ---------------- 1-RTT keys ---------------- */

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context. */
static int expand_label(uint8_t *out, size_t outlen, const ngtcp2_crypto_md *md,
                        const uint8_t *secret, size_t secretlen, const char *label) {
    uint8_t info[64];
    size_t llen = strlen(label);
    info[0] = (uint8_t)(outlen >> 8);
    info[1] = (uint8_t)outlen;
    info[2] = (uint8_t)(6 + llen);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, llen);
    info[9 + llen] = 0;
    return ngtcp2_crypto_hkdf_expand(out, outlen, md, secret, secretlen, info, 10 + llen);
}

/* Sets up the client's 1-RTT packet protection from the captured secret. */
static int keys_init(client_t *cl) {
    keys_t *k = &cl->k;
    if (!ngtcp2_crypto_ctx_tls(&k->ctx, cl->tls)) {
        return -1;
    }
    size_t keylen = ngtcp2_crypto_aead_keylen(&k->ctx.aead);
    k->ivlen = ngtcp2_crypto_packet_protection_ivlen(&k->ctx.aead);
    uint8_t key[KEY_MAX];
    uint8_t hpkey[KEY_MAX];
    if (keylen > KEY_MAX || k->ivlen > KEY_MAX ||
        expand_label(key, keylen, &k->ctx.md, cl->secret, cl->secretlen, "quic key") != 0 ||
        expand_label(k->iv, k->ivlen, &k->ctx.md, cl->secret, cl->secretlen, "quic iv") != 0 ||
        expand_label(hpkey, keylen, &k->ctx.md, cl->secret, cl->secretlen, "quic hp") != 0) {
        return -1;
    }
    if (ngtcp2_crypto_aead_ctx_encrypt_init(&k->enc, &k->ctx.aead, key, k->ivlen) != 0) {
        return -1;
    }
    k->enc_init = true;
    if (ngtcp2_crypto_aead_ctx_decrypt_init(&k->dec, &k->ctx.aead, key, k->ivlen) != 0) {
        return -1;
    }
    k->dec_init = true;
    /* Header protection (RFC 9001 5.4.3, 5.4.4): AES-ECB on the sample (CBC with a zero IV,
     * one block), or ChaCha20 keyed by the sample. */
    switch (gnutls_cipher_get(cl->tls)) {
    case GNUTLS_CIPHER_AES_128_GCM: k->hp_alg = GNUTLS_CIPHER_AES_128_CBC; break;
    case GNUTLS_CIPHER_AES_256_GCM: k->hp_alg = GNUTLS_CIPHER_AES_256_CBC; break;
    case GNUTLS_CIPHER_CHACHA20_POLY1305: k->hp_alg = GNUTLS_CIPHER_CHACHA20_32; break;
    default: return -1;
    }
    gnutls_datum_t hk = {.data = hpkey, .size = (unsigned)keylen};
    if (gnutls_cipher_init(&k->hp, k->hp_alg, &hk, NULL) != 0) {
        k->hp = NULL;
        return -1;
    }
    k->ready = true;
    return 0;
}

static void keys_free(keys_t *k) {
    if (k->enc_init) {
        ngtcp2_crypto_aead_ctx_free(&k->enc);
    }
    if (k->dec_init) {
        ngtcp2_crypto_aead_ctx_free(&k->dec);
    }
    if (k->hp) {
        gnutls_cipher_deinit(k->hp);
    }
}

static int hp_mask(keys_t *k, const uint8_t *sample, uint8_t mask[5]) {
    uint8_t out[16];
    if (k->hp_alg == GNUTLS_CIPHER_CHACHA20_32) {
        static const uint8_t zeros[5];
        gnutls_cipher_set_iv(k->hp, (void *)sample, 16);
        if (gnutls_cipher_encrypt2(k->hp, zeros, sizeof(zeros), out, sizeof(zeros)) != 0) {
            return -1;
        }
    } else {
        uint8_t iv[16] = {0};
        gnutls_cipher_set_iv(k->hp, iv, sizeof(iv));
        if (gnutls_cipher_encrypt2(k->hp, sample, 16, out, 16) != 0) {
            return -1;
        }
    }
    memcpy(mask, out, 5);
    return 0;
}

static void make_nonce(const keys_t *k, int64_t pn, uint8_t *nonce) {
    memcpy(nonce, k->iv, k->ivlen);
    for (size_t i = 0; i < 8; i++) {
        nonce[k->ivlen - 1 - i] ^= (uint8_t)((uint64_t)pn >> (8 * i));
    }
}

/* Where the short-header packet of a datagram starts (after coalesced long-header ones), or
 * -1 when there is none. */
static ssize_t short_packet_offset(const uint8_t *p, size_t len) {
    size_t off = 0;
    while (off < len && (p[off] & 0x80)) {
        size_t o = off + 5; /* first byte, version */
        if (o >= len) {
            return -1;
        }
        o += 1 + p[o]; /* DCID */
        if (o >= len) {
            return -1;
        }
        o += 1 + p[o]; /* SCID */
        uint64_t v;
        if (((p[off] & 0x30) >> 4) == 0) { /* Initial: token */
            if (!get_varint(p, len, &o, &v) || v > len) {
                return -1;
            }
            o += v;
        }
        if (!get_varint(p, len, &o, &v) || o + v > len) {
            return -1;
        }
        off = o + v;
    }
    return off < len ? (ssize_t)off : -1;
}

/* Removes the header protection of the short packet at `p` (in a copy: `hdr` gets the clear
 * header); returns the header length and sets *pn, or -1. */
static ssize_t unprotect(client_t *cl, const uint8_t *p, size_t len, uint8_t *hdr, int64_t *pn,
                         bool *key_phase) {
    size_t dcidlen = ngtcp2_conn_get_dcid(cl->conn)->datalen;
    size_t pn_off = 1 + dcidlen;
    uint8_t mask[5];
    if (pn_off + 4 + 16 > len || hp_mask(&cl->k, p + pn_off + 4, mask) != 0) {
        return -1;
    }
    hdr[0] = p[0] ^ (mask[0] & 0x1f);
    size_t pnlen = (size_t)(hdr[0] & 0x03) + 1;
    memcpy(hdr + 1, p + 1, dcidlen);
    uint64_t t = 0;
    for (size_t i = 0; i < pnlen; i++) {
        hdr[pn_off + i] = p[pn_off + i] ^ mask[1 + i];
        t = t << 8 | hdr[pn_off + i];
    }
    *pn = decode_pn(cl->largest_pn, t, pnlen);
    *key_phase = (hdr[0] & 0x04) != 0;
    return (ssize_t)(pn_off + pnlen);
}

/* Appends `extra` to the payload of ngtcp2's short packet in `p` (len bytes, room for more up
 * to PKT_MAX) with the same packet number; returns the new length, or 0 if it cannot. */
static size_t rewrite(client_t *cl, uint8_t *p, size_t len, const uint8_t *extra, size_t extralen) {
    uint8_t hdr[64];
    int64_t pn;
    bool key_phase;
    ssize_t hlen = unprotect(cl, p, len, hdr, &pn, &key_phase);
    size_t tag = cl->k.ctx.aead.max_overhead;
    if (hlen < 0 || key_phase || len < (size_t)hlen + tag ||
        len + extralen > PKT_MAX) { /* key phase 1: a key update we have no key for */
        return 0;
    }
    uint8_t nonce[KEY_MAX];
    make_nonce(&cl->k, pn, nonce);
    uint8_t plain[PKT_MAX];
    size_t clen = len - (size_t)hlen;
    if (ngtcp2_crypto_decrypt(plain, &cl->k.ctx.aead, &cl->k.dec, p + hlen, clen, nonce,
                              cl->k.ivlen, hdr, (size_t)hlen) != 0) {
        return 0;
    }
    size_t plen = clen - tag;
    memcpy(plain + plen, extra, extralen);
    plen += extralen;
    memcpy(p, hdr, (size_t)hlen);
    if (ngtcp2_crypto_encrypt(p + hlen, &cl->k.ctx.aead, &cl->k.enc, plain, plen, nonce,
                              cl->k.ivlen, hdr, (size_t)hlen) != 0) {
        return 0;
    }
    size_t n = (size_t)hlen + plen + tag;
    size_t pn_off = 1 + ngtcp2_conn_get_dcid(cl->conn)->datalen;
    uint8_t mask[5];
    if (hp_mask(&cl->k, p + pn_off + 4, mask) != 0) {
        return 0;
    }
    p[0] ^= mask[0] & 0x1f;
    for (size_t i = 0; i < (size_t)hlen - pn_off; i++) {
        p[pn_off + i] ^= mask[1 + i];
    }
    return n;
}

/* ---------------- sending ---------------- */

/* Sends one datagram; notes the packet number of its 1-RTT packet. */
static void send_pkt(client_t *cl, const uint8_t *p, size_t len) {
    if (cl->k.ready) {
        ssize_t off = short_packet_offset(p, len);
        uint8_t hdr[64];
        int64_t pn;
        bool kp;
        if (off >= 0 && unprotect(cl, p + off, len - (size_t)off, hdr, &pn, &kp) > 0 &&
            pn > cl->largest_pn) {
            cl->largest_pn = pn;
        }
    }
    for (;;) {
        ssize_t n = send(cl->fd, p, len, 0);
        if (n >= 0 || errno == ECONNREFUSED) {
            return; /* a refused send shows up as the server not answering */
        }
        if (errno != EAGAIN && errno != EINTR) {
            return;
        }
        struct pollfd pfd = {.fd = cl->fd, .events = POLLOUT};
        (void)poll(&pfd, 1, 10);
    }
}

/* Writes the abusive frames of the next injected packet into `out` (at most `room` bytes);
 * returns their length and sets *frames (0: nothing fits or nothing left). */
static size_t next_frames(client_t *cl, uint8_t *out, size_t room, uint32_t *frames,
                          uint64_t *crypto_end) {
    size_t n = 0;
    *frames = 0;
    *crypto_end = 0;
    switch (cl->mode) {
    case ABUSE_CIDS:
        while (cl->frames_planned + *frames < cl->count && n + 1 + 8 + 8 + 1 + 20 + 16 <= room) {
            uint64_t seq = 100 + cl->frames_planned + *frames;
            uint8_t cidlen = 16;
            out[n++] = 0x18;
            n += put_varint(out + n, seq);
            n += put_varint(out + n, 0);
            out[n++] = cidlen;
            (void)gnutls_rnd(GNUTLS_RND_NONCE, out + n, cidlen + 16u); /* CID, reset token */
            n += cidlen + 16u;
            (*frames)++;
        }
        break;
    case ABUSE_PATH_CHALLENGE:
        while (cl->frames_planned + *frames < cl->count && n + 9 <= room) {
            uint64_t v = cl->frames_planned + *frames;
            out[n++] = 0x1a;
            for (int i = 7; i >= 0; i--) {
                out[n++] = (uint8_t)(v >> (8 * i));
            }
            (*frames)++;
        }
        break;
    case ABUSE_CRYPTO:
        if (cl->frames_planned == 0 && room >= 1 + 8 + 1 + 32) {
            out[n++] = 0x06;
            n += put_varint(out + n, cl->offset);
            n += put_varint(out + n, 32);
            memset(out + n, 0x16, 32);
            n += 32;
            *frames = 1;
            *crypto_end = cl->offset + 32;
        }
        break;
    case ABUSE_CRYPTO_SMALL:
        if (cl->frames_planned < cl->count && room >= 1 + 8 + 2 + CRYPTO_CHUNK) {
            out[n++] = 0x06;
            n += put_varint(out + n, cl->crypto_next);
            n += put_varint(out + n, CRYPTO_CHUNK);
            memset(out + n, 0x16, CRYPTO_CHUNK);
            n += CRYPTO_CHUNK;
            *frames = 1;
            *crypto_end = cl->crypto_next + CRYPTO_CHUNK;
        }
        break;
    case ABUSE_STREAMS:
    case ABUSE_STREAMS_UNI:
        if (cl->frames_planned == 0 && room >= 1 + 8 + 1 + 5) {
            out[n++] = 0x0a; /* STREAM with a length, no offset, no FIN */
            n += put_varint(out + n, (uint64_t)cl->stream_id);
            n += put_varint(out + n, 5);
            memcpy(out + n, "hello", 5);
            n += 5;
            *frames = 1;
        }
        break;
    case ABUSE_FLOW_STREAM:
        if (cl->frames_planned == 0 && room >= 1 + 8 + 8 + 1 + 5) {
            /* The bytes before it never come: the server holds these, delivers nothing. */
            size_t dlen = cl->data_end < 5 ? (size_t)cl->data_end : 5;
            out[n++] = 0x0e; /* STREAM with an offset and a length, no FIN */
            n += put_varint(out + n, (uint64_t)cl->stream_id);
            n += put_varint(out + n, cl->data_end - dlen);
            n += put_varint(out + n, dlen);
            memcpy(out + n, "hello", dlen);
            n += dlen;
            *frames = 1;
        }
        break;
    case ABUSE_FLOW_CONN:
        /* Frame i: the last byte of stream (streams_max - 1 - i), the streams' ends spread
         * evenly so that they add up to data_end, each at most the stream window. */
        while (cl->frames_planned + *frames < cl->count && n + 1 + 8 + 8 + 1 + 1 <= room) {
            uint64_t i = cl->frames_planned + *frames;
            uint64_t end = cl->data_end / cl->count + (i < cl->data_end % cl->count ? 1 : 0);
            out[n++] = 0x0e;
            n += put_varint(out + n, 4 * (cl->streams_max - 1 - i));
            n += put_varint(out + n, end - 1);
            n += put_varint(out + n, 1);
            out[n++] = 'x';
            (*frames)++;
        }
        break;
    case ABUSE_RETIRE_CID:
        if (cl->frames_planned == 0 && room >= 1 + 8) {
            out[n++] = 0x19;
            n += put_varint(out + n, cl->retire_seq);
            *frames = 1;
        }
        break;
    case ABUSE_NONE: break;
    }
    return n;
}

static bool plan_finished(const client_t *cl) {
    switch (cl->mode) {
    case ABUSE_CRYPTO:
    case ABUSE_STREAMS:
    case ABUSE_STREAMS_UNI:
    case ABUSE_FLOW_STREAM:
    case ABUSE_RETIRE_CID: return cl->frames_planned >= 1;
    case ABUSE_NONE: return true;
    default: return cl->frames_planned >= cl->count;
    }
}

static uint64_t in_flight(const client_t *cl) {
    return cl->pkts_injected - cl->pkts_acked - cl->pkts_lost;
}

/* Sends one injected packet if the window allows; false when it could not (blocked). */
static bool inject_one(client_t *cl) {
    if (cl->ninj == cl->capinj) {
        size_t cap = cl->capinj ? cl->capinj * 2 : 1024;
        injected_t *p = cap <= MAX_INJECTED ? realloc(cl->inj, cap * sizeof(*p)) : NULL;
        if (!p) {
            cl->injecting_done = true; /* the table is full: stop injecting, report it */
            snprintf(cl->error, sizeof(cl->error), "injected-packet table full");
            return false;
        }
        cl->inj = p;
        cl->capinj = cap;
    }
    uint8_t pkt[PKT_MAX];
    int accepted = 0;
    uint8_t one = 0;
    uint64_t id = cl->ninj;
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n =
        ngtcp2_conn_write_datagram(cl->conn, &cl->ps.path, &pi, pkt, sizeof(pkt), &accepted,
                                   NGTCP2_WRITE_DATAGRAM_FLAG_NONE, id, &one, 1, now_ns());
    if (n == NGTCP2_ERR_INVALID_STATE) {
        fail(cl, "the server does not accept DATAGRAM frames (they carry the injected frames)");
        return false;
    }
    if (n < 0) {
        fail(cl, ngtcp2_strerror((int)n));
        return false;
    }
    if (n == 0) {
        return false; /* congestion limited: wait for ACKs */
    }
    if (!accepted) {
        send_pkt(cl, pkt, (size_t)n);
        return true;
    }
    injected_t *e = &cl->inj[cl->ninj++];
    memset(e, 0, sizeof(*e));
    uint8_t extra[PKT_MAX];
    uint32_t frames = 0;
    uint64_t crypto_end = 0;
    size_t extralen = 0;
    size_t len = (size_t)n;
    if (pkt[0] & 0x80 || !cl->k.ready) {
        cl->rewrite_skipped++; /* coalesced with a handshake packet: send it as it is */
    } else {
        extralen = next_frames(cl, extra, PKT_MAX - len, &frames, &crypto_end);
    }
    if (frames > 0) {
        size_t m = rewrite(cl, pkt, len, extra, extralen);
        if (m == 0) {
            cl->rewrite_skipped++;
            frames = 0;
        } else {
            len = m;
        }
    }
    if (frames > 0) {
        e->frames = frames;
        e->crypto_end = crypto_end;
        cl->frames_planned += frames;
        cl->frames_injected += frames;
        cl->pkts_injected++;
        if (cl->mode == ABUSE_CRYPTO_SMALL) {
            cl->crypto_next += CRYPTO_CHUNK;
        }
    }
    send_pkt(cl, pkt, len);
    return true;
}

/* Lets ngtcp2 send what it has, the echo stream's bytes included. */
static void flush(client_t *cl) {
    for (;;) {
        uint8_t pkt[PKT_MAX];
        ngtcp2_pkt_info pi;
        ngtcp2_ssize wlen = -1;
        int64_t sid = -1;
        ngtcp2_vec v = {0};
        uint32_t flags = 0;
        if (cl->echo_started && !cl->echo_fin_sent) {
            sid = cl->echo_sid;
            v.base = pattern + cl->echo_sent;
            v.len = ECHO_BYTES - cl->echo_sent;
            flags = NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize n =
            ngtcp2_conn_writev_stream(cl->conn, &cl->ps.path, &pi, pkt, sizeof(pkt), &wlen, flags,
                                      sid, &v, sid >= 0 ? 1 : 0, now_ns());
        if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR) {
            n = ngtcp2_conn_write_pkt(cl->conn, &cl->ps.path, &pi, pkt, sizeof(pkt), now_ns());
        } else if (wlen >= 0) {
            cl->echo_sent += (size_t)wlen;
            cl->echo_fin_sent = cl->echo_sent == ECHO_BYTES;
        }
        if (n < 0) {
            if (n != NGTCP2_ERR_DRAINING && n != NGTCP2_ERR_CLOSING) {
                fail(cl, ngtcp2_strerror((int)n));
            }
            return;
        }
        if (n == 0) {
            return;
        }
        send_pkt(cl, pkt, (size_t)n);
    }
}

/* ---------------- ngtcp2 callbacks ---------------- */

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *rand_ctx) {
    (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int get_new_connection_id_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                                    size_t cidlen, void *user_data) {
    if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0 ||
        gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0) {
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    cid->datalen = cidlen;
    return 0;
}

static int handshake_confirmed_cb(ngtcp2_conn *conn, void *user_data) {
    client_t *cl = user_data;
    cl->confirmed = true;
    return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data) {
    client_t *cl = user_data;
    if (stream_id == cl->echo_sid) {
        for (size_t i = 0; i < datalen; i++) {
            uint64_t at = offset + i;
            if (at >= ECHO_BYTES || data[i] != pattern[at]) {
                cl->echo_mismatch = true;
            }
        }
        cl->echo_recv += datalen;
        if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
            cl->echo_done = true;
            cl->echo_done_ns = now_ns();
        }
    }
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

static void mark(client_t *cl, uint64_t id, uint8_t state) {
    if (id >= cl->ninj || cl->inj[id].state != 0) {
        return;
    }
    injected_t *e = &cl->inj[id];
    e->state = state;
    if (e->frames == 0) {
        return;
    }
    if (state == 1) {
        cl->pkts_acked++;
        cl->frames_acked += e->frames;
        if (e->crypto_end > cl->crypto_end_acked) {
            cl->crypto_end_acked = e->crypto_end;
        }
    } else {
        cl->pkts_lost++;
    }
}

static int ack_datagram_cb(ngtcp2_conn *conn, uint64_t dgram_id, void *user_data) {
    mark(user_data, dgram_id, 1);
    return 0;
}

static int lost_datagram_cb(ngtcp2_conn *conn, uint64_t dgram_id, void *user_data) {
    mark(user_data, dgram_id, 2);
    return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t datalen,
                            void *user_data) {
    return 0; /* quic-echo's echoes of the carrier datagrams */
}

static void log_cb(void *user_data, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
    return ((client_t *)ref->user_data)->conn;
}

/* GnuTLS's key log: the client's 1-RTT secret is all the tool needs from it. */
static int keylog_cb(gnutls_session_t session, const char *label, const gnutls_datum_t *secret) {
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    client_t *cl = ref->user_data;
    if (!strcmp(label, "CLIENT_TRAFFIC_SECRET_0") && secret->size <= KEY_MAX) {
        memcpy(cl->secret, secret->data, secret->size);
        cl->secretlen = secret->size;
    }
    return 0;
}

/* ---------------- setup ---------------- */

static int tls_setup(client_t *cl, const char *host, const char *sni, const char *alpn,
                     const char *ca, bool insecure) {
    if (gnutls_certificate_allocate_credentials(&cl->cred) != 0) {
        return -1;
    }
    if (ca && gnutls_certificate_set_x509_trust_file(cl->cred, ca, GNUTLS_X509_FMT_PEM) <= 0) {
        fprintf(stderr, "quic-misbehave: cannot read CA file %s\n", ca);
        return -1;
    }
    if (gnutls_init(&cl->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
        cl->tls = NULL;
        return -1;
    }
    gnutls_datum_t a = {.data = (unsigned char *)alpn, .size = (unsigned)strlen(alpn)};
    if (ngtcp2_crypto_gnutls_configure_client_session(cl->tls) != 0 ||
        gnutls_priority_set_direct(cl->tls, PRIORITY, NULL) != 0 ||
        gnutls_credentials_set(cl->tls, GNUTLS_CRD_CERTIFICATE, cl->cred) != 0 ||
        gnutls_alpn_set_protocols(cl->tls, &a, 1, GNUTLS_ALPN_MANDATORY) != 0) {
        return -1;
    }
    const char *name = sni ? sni : host;
    size_t iplen = inet_pton(AF_INET, name, cl->ip_store) == 1    ? 4
                   : inet_pton(AF_INET6, name, cl->ip_store) == 1 ? 16
                                                                  : 0;
    if (!iplen && gnutls_server_name_set(cl->tls, GNUTLS_NAME_DNS, name, strlen(name)) != 0) {
        return -1;
    }
    if (!insecure && !iplen) {
        gnutls_session_set_verify_cert(cl->tls, name, 0);
    } else if (!insecure) {
        gnutls_typed_vdata_st vd = {
            .type = GNUTLS_DT_IP_ADDRESS, .data = cl->ip_store, .size = (unsigned)iplen};
        gnutls_session_set_verify_cert2(cl->tls, &vd, 1, 0);
    }
    cl->ref.get_conn = get_conn_cb;
    cl->ref.user_data = cl;
    gnutls_session_set_ptr(cl->tls, &cl->ref);
    gnutls_session_set_keylog_function(cl->tls, keylog_cb);
    return 0;
}

static int quic_setup(client_t *cl, const struct addrinfo *ai) {
    cl->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cl->fd < 0 || connect(cl->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        return -1;
    }
    struct sockaddr_storage local;
    socklen_t locallen = sizeof(local);
    if (getsockname(cl->fd, (struct sockaddr *)&local, &locallen) != 0) {
        return -1;
    }
    ngtcp2_path_storage_init(&cl->ps, (struct sockaddr *)&local, locallen, ai->ai_addr,
                             ai->ai_addrlen, NULL);
    ngtcp2_callbacks cb = {
        .client_initial = ngtcp2_crypto_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_retry = ngtcp2_crypto_recv_retry_cb,
        .rand = rand_cb,
        .get_new_connection_id = get_new_connection_id_cb,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
        .handshake_confirmed = handshake_confirmed_cb,
        .recv_stream_data = recv_stream_data_cb,
        .ack_datagram = ack_datagram_cb,
        .lost_datagram = lost_datagram_cb,
        .recv_datagram = recv_datagram_cb,
    };
    ngtcp2_settings st;
    ngtcp2_settings_default(&st);
    st.initial_ts = now_ns();
    st.max_tx_udp_payload_size = PKT_MAX;
    st.no_pmtud = 1; /* every packet stays within PKT_MAX, with room to append frames */
    if (cl->verbose) {
        st.log_printf = log_cb;
    }
    ngtcp2_transport_params tp;
    ngtcp2_transport_params_default(&tp);
    tp.initial_max_stream_data_bidi_local = 1 << 20;
    tp.initial_max_data = 4 << 20;
    tp.initial_max_streams_uni = 3;
    tp.max_idle_timeout = 30 * NGTCP2_SECONDS;
    tp.max_datagram_frame_size = 65535;
    ngtcp2_cid dcid;
    ngtcp2_cid scid;
    dcid.datalen = 16;
    scid.datalen = 16;
    if (gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen) != 0 ||
        gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen) != 0) {
        return -1;
    }
    if (ngtcp2_conn_client_new(&cl->conn, &dcid, &scid, &cl->ps.path, NGTCP2_PROTO_VER_V1, &cb, &st,
                               &tp, NULL, cl) != 0) {
        cl->conn = NULL;
        return -1;
    }
    ngtcp2_conn_set_tls_native_handle(cl->conn, cl->tls);
    return 0;
}

/* ---------------- the loop ---------------- */

static void on_read_error(client_t *cl, int rv) {
    if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
        const ngtcp2_ccerr *e = ngtcp2_conn_get_ccerr(cl->conn);
        cl->closed_by_peer = rv == NGTCP2_ERR_DRAINING;
        cl->ccerr = *e;
        size_t n = e->reasonlen < sizeof(cl->reason) - 1 ? e->reasonlen : sizeof(cl->reason) - 1;
        for (size_t i = 0; i < n; i++) { /* JSON-safe */
            char c = (char)e->reason[i];
            cl->reason[i] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? c : '?';
        }
        cl->reason[n] = '\0';
        cl->done = true;
        return;
    }
    cl->local_error = true;
    snprintf(cl->error, sizeof(cl->error), "ngtcp2_conn_read_pkt: %s", ngtcp2_strerror(rv));
    cl->done = true;
}

static void read_all(client_t *cl) {
    uint8_t buf[65536];
    for (int i = 0; i < 256 && !cl->done; i++) {
        ssize_t n = recv(cl->fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == ECONNREFUSED) {
                fail(cl, "connection refused (nobody listens on that port)");
            }
            return;
        }
        ngtcp2_pkt_info pi = {0};
        int rv = ngtcp2_conn_read_pkt(cl->conn, &cl->ps.path, &pi, buf, (size_t)n, now_ns());
        if (rv != 0) {
            on_read_error(cl, rv);
        }
    }
}

/* Reads the server's limit the mode aims at (its transport parameters, once the handshake is
 * confirmed) and plans the frames that go past it; false (and the run fails) when it cannot. */
static bool aim(client_t *cl) {
    const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(cl->conn);
    /* Client-initiated stream n (from 0) has ID 4n, 4n + 2 when unidirectional; a limit of L
     * allows streams 0 .. L - 1, so ID 4L (+ 2) is the first past it. */
    cl->streams_max =
        rp->initial_max_streams_bidi < (1ULL << 60) ? rp->initial_max_streams_bidi : 1ULL << 60;
    cl->stream_win = rp->initial_max_stream_data_bidi_remote;
    switch (cl->mode) {
    case ABUSE_CIDS: cl->limit = rp->active_connection_id_limit; break;
    case ABUSE_STREAMS:
    case ABUSE_STREAMS_UNI:
        cl->limit =
            cl->mode == ABUSE_STREAMS ? rp->initial_max_streams_bidi : rp->initial_max_streams_uni;
        if (cl->limit >= (1ULL << 60)) {
            fail(cl, "the server allows the most streams QUIC can number: no limit to break");
            return false;
        }
        cl->stream_id = (int64_t)(4 * cl->limit + (cl->mode == ABUSE_STREAMS ? 0 : 2));
        break;
    case ABUSE_FLOW_STREAM:
        /* The last stream the server allows, not stream 0: that one is the echo's. */
        cl->limit = cl->stream_win;
        cl->data_end = cl->limit + cl->excess;
        if (cl->streams_max == 0 || cl->data_end >= (1ULL << 62)) {
            fail(cl, "the server allows no client bidi stream, or no window limit to break");
            return false;
        }
        cl->stream_id = (int64_t)(4 * (cl->streams_max - 1));
        break;
    case ABUSE_FLOW_CONN:
        cl->limit = rp->initial_max_data;
        cl->data_end = cl->limit + cl->excess;
        /* As few streams as can hold data_end with at most a stream window each. */
        cl->count = cl->stream_win
                        ? cl->data_end / cl->stream_win + (cl->data_end % cl->stream_win ? 1 : 0)
                        : 0;
        if (cl->count == 0 || cl->count > MAX_FLOW_CONN || cl->count > cl->streams_max ||
            cl->data_end < cl->count || cl->data_end >= (1ULL << 62)) {
            fail(cl, "the server's connection window does not fit its stream windows and "
                     "stream limit (or is empty, or needs more than 1000 streams)");
            return false;
        }
        cl->stream_id = (int64_t)(4 * (cl->streams_max - cl->count));
        break;
    case ABUSE_RETIRE_CID: {
        /* While the client retires none, the server may issue sequence numbers 0 .. our
         * active_connection_id_limit - 1 (RFC 9000 5.1.1): that limit is one it never issued.
         * Above every one the client holds, too, in case it retired some. */
        cl->limit = ngtcp2_conn_get_local_transport_params(cl->conn)->active_connection_id_limit;
        cl->retire_seq = cl->limit;
        ngtcp2_cid_token toks[MAX_DCIDS];
        size_t n = ngtcp2_conn_get_active_dcid(cl->conn, NULL);
        if (n <= MAX_DCIDS) {
            n = ngtcp2_conn_get_active_dcid(cl->conn, toks);
            for (size_t i = 0; i < n; i++) {
                if (toks[i].seq >= cl->retire_seq) {
                    cl->retire_seq = toks[i].seq + 1;
                }
            }
        }
        break;
    }
    default: break;
    }
    return true;
}

/* What the loop does next, once the handshake is confirmed. */
static void step(client_t *cl) {
    if (!cl->k.ready && cl->secretlen > 0 && ngtcp2_conn_get_handshake_completed(cl->conn)) {
        if (keys_init(cl) != 0) {
            fail(cl, "cannot derive the 1-RTT keys");
            return;
        }
    }
    if (!cl->confirmed || !cl->k.ready) {
        return;
    }
    if (!cl->aimed) {
        cl->aimed = true;
        if (!aim(cl)) {
            return;
        }
    }
    while (!cl->injecting_done && !cl->done) {
        if (plan_finished(cl)) {
            cl->injecting_done = true;
            break;
        }
        if (in_flight(cl) >= cl->window || !inject_one(cl)) {
            break;
        }
    }
    if (cl->injecting_done && cl->no_echo && !cl->echo_done) {
        cl->echo_done = true; /* nothing to echo: wait for the last ACKs, then close */
        cl->echo_done_ns = now_ns();
    }
    if (cl->injecting_done && !cl->echo_started && !cl->no_echo && !cl->done) {
        int rv = ngtcp2_conn_open_bidi_stream(cl->conn, &cl->echo_sid, NULL);
        if (rv == 0) {
            cl->echo_started = true;
        } else if (rv != NGTCP2_ERR_STREAM_ID_BLOCKED) {
            fail(cl, ngtcp2_strerror(rv));
        }
    }
}

static void close_conn(client_t *cl) {
    uint8_t pkt[PKT_MAX];
    ngtcp2_pkt_info pi;
    ngtcp2_ccerr e;
    ngtcp2_ccerr_default(&e);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(cl->conn, &cl->ps.path, &pi, pkt,
                                                        sizeof(pkt), &e, now_ns());
    if (n > 0) {
        send_pkt(cl, pkt, (size_t)n);
    }
}

static void run(client_t *cl) {
    while (!cl->done) {
        uint64_t now = now_ns();
        if (now >= cl->deadline_ns) {
            fail(cl, "timed out");
            break;
        }
        if (cl->echo_done &&
            (in_flight(cl) == 0 || now - cl->echo_done_ns > (uint64_t)CLOSE_GRACE_MS * 1000000)) {
            close_conn(cl);
            break;
        }
        step(cl);
        if (cl->done) {
            break;
        }
        flush(cl);
        uint64_t expiry = ngtcp2_conn_get_expiry(cl->conn);
        uint64_t wake = expiry < cl->deadline_ns ? expiry : cl->deadline_ns;
        now = now_ns();
        int timeout = wake <= now ? 0 : (int)((wake - now) / 1000000 + 1);
        if (timeout > 100) {
            timeout = 100;
        }
        struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout) > 0) {
            read_all(cl);
        }
        if (!cl->done && ngtcp2_conn_get_expiry(cl->conn) <= now_ns()) {
            int rv = ngtcp2_conn_handle_expiry(cl->conn, now_ns());
            if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
                cl->idle_closed = true;
                fail(cl, rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
            } else if (rv != 0) {
                fail(cl, ngtcp2_strerror(rv));
            }
        }
    }
}

static const char *ccerr_type(ngtcp2_ccerr_type t) {
    switch (t) {
    case NGTCP2_CCERR_TYPE_TRANSPORT: return "transport";
    case NGTCP2_CCERR_TYPE_APPLICATION: return "application";
    case NGTCP2_CCERR_TYPE_VERSION_NEGOTIATION: return "version_negotiation";
    case NGTCP2_CCERR_TYPE_IDLE_CLOSE: return "idle_close";
    default: return "other";
    }
}

static void print_summary(client_t *cl) {
    bool handshake = cl->conn && ngtcp2_conn_get_handshake_completed(cl->conn);
    bool echo_ok = cl->echo_done && !cl->echo_mismatch && cl->echo_recv == ECHO_BYTES;
    printf("{\"mode\":\"%s\",\"handshake\":%s,\"limit\":%" PRIu64 ",\"stream_id\":%" PRId64
           ",\"packets_injected\":%" PRIu64 ",\"packets_acked\":%" PRIu64
           ",\"packets_lost\":%" PRIu64 ",\"frames_injected\":%" PRIu64 ",\"frames_acked\":%" PRIu64
           ",\"crypto_end_acked\":%" PRIu64 ",\"rewrite_skipped\":%" PRIu64 ",\"data_end\":%" PRIu64
           ",\"streams_used\":%" PRIu64 ",\"retire_seq\":%" PRIu64
           ",\"injection_done\":%s,\"closed_by_peer\":%s",
           ABUSE_NAMES[cl->mode], handshake ? "true" : "false", cl->limit, cl->stream_id,
           cl->pkts_injected, cl->pkts_acked, cl->pkts_lost, cl->frames_injected, cl->frames_acked,
           cl->crypto_end_acked, cl->rewrite_skipped, cl->data_end,
           cl->mode == ABUSE_FLOW_CONN ? cl->count : 0, cl->retire_seq,
           cl->injecting_done ? "true" : "false", cl->closed_by_peer ? "true" : "false");
    if (cl->closed_by_peer) {
        printf(",\"error_type\":\"%s\",\"error_code\":%" PRIu64 ",\"frame_type\":%" PRIu64
               ",\"reason\":\"%s\"",
               ccerr_type(cl->ccerr.type), cl->ccerr.error_code, cl->ccerr.frame_type, cl->reason);
    }
    printf(",\"echo_ok\":%s,\"echo_bytes\":%zu,\"error\":\"%s\"}\n", echo_ok ? "true" : "false",
           cl->echo_recv, cl->error);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        usage();
        return 2;
    }
    const char *host = argv[1];
    const char *port = argv[2];
    const char *alpn = "tp-echo";
    const char *ca = NULL;
    const char *sni = NULL;
    const char *mode = NULL;
    bool insecure = false;
    uint64_t timeout_ms = 30000;
    static client_t cl;
    cl.count = UINT64_MAX;
    cl.offset = 1 << 20;
    cl.window = 16;
    cl.excess = 1;
    cl.stream_id = -1;
    cl.echo_sid = -1;
    cl.largest_pn = -1;
    cl.fd = -1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure")) {
            insecure = true;
            continue;
        }
        if (!strcmp(a, "--verbose")) {
            cl.verbose = true;
            continue;
        }
        if (!strcmp(a, "--no-echo")) {
            cl.no_echo = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        bool ok = v != NULL;
        if (!ok) {
            fprintf(stderr, "quic-misbehave: %s needs a value\n", a);
        } else if (!strcmp(a, "--abuse")) {
            mode = v;
        } else if (!strcmp(a, "--count")) {
            ok = parse_u64(v, &cl.count) && cl.count > 0 && cl.count <= MAX_COUNT;
        } else if (!strcmp(a, "--offset")) {
            ok = parse_u64(v, &cl.offset) && cl.offset < (1ULL << 62) - 64;
        } else if (!strcmp(a, "--excess")) {
            ok = parse_u64(v, &cl.excess) && cl.excess <= MAX_EXCESS;
        } else if (!strcmp(a, "--window")) {
            ok = parse_u64(v, &cl.window) && cl.window > 0 && cl.window <= MAX_WINDOW;
        } else if (!strcmp(a, "--timeout-ms")) {
            ok = parse_u64(v, &timeout_ms) && timeout_ms > 0 && timeout_ms <= 3600000;
        } else if (!strcmp(a, "--alpn")) {
            alpn = v;
            ok = strlen(v) > 0 && strlen(v) < 256;
        } else if (!strcmp(a, "--ca")) {
            ca = v;
        } else if (!strcmp(a, "--sni")) {
            sni = v;
        } else {
            fprintf(stderr, "quic-misbehave: unknown option %s\n", a);
            ok = false;
        }
        if (!ok) {
            if (v) {
                fprintf(stderr, "quic-misbehave: bad value for %s: %s\n", a, v);
            }
            usage();
            return 2;
        }
    }
    bool known = false;
    for (size_t i = 0; mode && i < sizeof(ABUSE_NAMES) / sizeof(ABUSE_NAMES[0]); i++) {
        if (!strcmp(mode, ABUSE_NAMES[i])) {
            cl.mode = (abuse_t)i;
            known = true;
        }
    }
    if (!known || (!ca && !insecure)) {
        fprintf(stderr, "quic-misbehave: %s\n",
                !mode    ? "--abuse MODE is required"
                : !known ? "unknown --abuse mode"
                         : "give --ca FILE or --insecure");
        usage();
        return 2;
    }
    if (cl.count == UINT64_MAX) {
        cl.count = cl.mode == ABUSE_CIDS             ? 8
                   : cl.mode == ABUSE_PATH_CHALLENGE ? 1000000
                   : cl.mode == ABUSE_CRYPTO_SMALL   ? 128
                                                     : 1;
    }
    if (cl.mode == ABUSE_CRYPTO_SMALL) {
        cl.window = 1; /* one at a time: what was acknowledged is what the server holds */
        cl.crypto_next = CRYPTO_CHUNK;
    }
    for (size_t i = 0; i < ECHO_BYTES; i++) {
        pattern[i] = (uint8_t)(i % 251);
    }
    cl.start_ns = now_ns();
    cl.deadline_ns = cl.start_ns + timeout_ms * 1000000;
    struct addrinfo hints;
    struct addrinfo *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = 1;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        fail(&cl, "cannot resolve the host");
    } else if (tls_setup(&cl, host, sni, alpn, ca, insecure) != 0) {
        fail(&cl, "TLS setup failed");
    } else if (quic_setup(&cl, ai) != 0) {
        fail(&cl, "QUIC setup failed");
    } else {
        run(&cl);
        /* Ran as designed: the handshake happened and every planned frame went out, or the
         * server closed first (what the server made of them is for the caller to judge). */
        rc =
            ngtcp2_conn_get_handshake_completed(cl.conn) && (cl.injecting_done || cl.closed_by_peer)
                ? 0
                : 1;
    }
    print_summary(&cl);
    if (ai) {
        freeaddrinfo(ai);
    }
    if (cl.conn) {
        ngtcp2_conn_del(cl.conn);
    }
    keys_free(&cl.k);
    if (cl.tls) {
        gnutls_deinit(cl.tls);
    }
    if (cl.cred) {
        gnutls_certificate_free_credentials(cl.cred);
    }
    if (cl.fd >= 0) {
        close(cl.fd);
    }
    free(cl.inj);
    return rc;
}
