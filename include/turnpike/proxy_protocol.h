/* turnpike/proxy_protocol.h: the PROXY protocol v1/v2 header a trusted proxy sends first. */
#ifndef TURNPIKE_PROXY_PROTOCOL_H
#define TURNPIKE_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turnpike/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt) lets a trusted load balancer in front of
 * Turnpike tell it who the client really is: one header before the first byte of the client's
 * stream. Only peers that are configured as trusted may send it; everyone else's header is an
 * error, never a guess.
 */

/* Versions, as bits of an accept mask. */
#define TP_PP_V1 0x1u /* the text line "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n" */
#define TP_PP_V2 0x2u /* the binary header starting "\r\n\r\n\0\r\nQUIT\n" */

/* The longest v1 line, CRLF included (the spec's "PROXY UNKNOWN <v6> <v6> 65535 65535\r\n"). */
#define TP_PP_V1_MAX_LEN 107
/* The longest v2 header the wire format allows: 16 fixed bytes and a 16-bit length. */
#define TP_PP_V2_MAX_LEN (16 + 65535)
/* The v2 limit used unless configured otherwise: real headers are a few hundred bytes at most. */
#define TP_PP_V2_DEFAULT_MAX 4096

/* What the sender says the connection is. The values are the v2 wire values. */
typedef enum tp_pp_command {
    /* The proxy opened the connection for itself (a health check): the header's addresses, if
     * any, describe that connection, so keep the real socket addresses. */
    TP_PP_CMD_LOCAL = 0,
    /* The proxy relays a client: src and dst are the client's original connection. */
    TP_PP_CMD_PROXY = 1,
} tp_pp_command_t;

/* The client's transport. v1 is always STREAM (TCP) or, for "UNKNOWN", UNSPEC. */
typedef enum tp_pp_transport {
    TP_PP_TRANSPORT_UNSPEC = 0, /* unknown: ignore the addresses */
    TP_PP_TRANSPORT_STREAM = 1, /* TCP or a UNIX stream socket */
    TP_PP_TRANSPORT_DGRAM = 2,  /* UDP or a UNIX datagram socket */
} tp_pp_transport_t;

/* The client's address family. */
typedef enum tp_pp_family {
    TP_PP_FAMILY_UNSPEC = 0, /* unknown (v1 "UNKNOWN", v2 AF_UNSPEC): keep the real addresses */
    TP_PP_FAMILY_INET = 1,   /* IPv4: src and dst are AF_INET addresses with ports */
    TP_PP_FAMILY_INET6 = 2,  /* IPv6: src and dst are AF_INET6 addresses with ports */
    TP_PP_FAMILY_UNIX = 3,   /* a UNIX socket: src_path and dst_path are set instead */
} tp_pp_family_t;

/* v2 TLV types (the spec's PP2_TYPE_*). */
#define TP_PP_TLV_ALPN       0x01 /* the negotiated ALPN protocol, e.g. "h2" */
#define TP_PP_TLV_AUTHORITY  0x02 /* the host name the client asked for (TLS SNI), UTF-8 */
#define TP_PP_TLV_CRC32C     0x03 /* CRC32C of the whole header: checked by the parser */
#define TP_PP_TLV_NOOP       0x04 /* padding: skipped, never reported */
#define TP_PP_TLV_UNIQUE_ID  0x05 /* an opaque id of the connection, up to 128 bytes */
#define TP_PP_TLV_SSL        0x20 /* TLS facts about the client connection: see tp_pp_ssl_t */
#define TP_PP_TLV_NETNS      0x30 /* the name of the network namespace, US-ASCII */
#define TP_PP_TLV_CUSTOM_MIN 0xE0 /* 0xE0..0xEF: application-specific, in the raw array only */
#define TP_PP_TLV_CUSTOM_MAX 0xEF

/* Sub-TLV types inside the SSL TLV (the spec's PP2_SUBTYPE_SSL_*). */
#define TP_PP_SSL_VERSION 0x21 /* "TLSv1.3" */
#define TP_PP_SSL_CN      0x22 /* Common Name of the client certificate's subject, UTF-8 */
#define TP_PP_SSL_CIPHER  0x23 /* "ECDHE-RSA-AES128-GCM-SHA256" */
#define TP_PP_SSL_SIG_ALG 0x24 /* algorithm that signed the proxy's certificate, "RSA-SHA256" */
#define TP_PP_SSL_KEY_ALG 0x25 /* algorithm of the proxy's certificate key, "RSA2048" */

/* Bits of tp_pp_ssl_t.client (the spec's PP2_CLIENT_*). */
#define TP_PP_SSL_CLIENT_SSL       0x01 /* the client connected over TLS */
#define TP_PP_SSL_CLIENT_CERT_CONN 0x02 /* it sent a certificate on this connection */
#define TP_PP_SSL_CLIENT_CERT_SESS 0x04 /* it sent one at least once in this TLS session */

/*
 * Lifetimes: every tp_str_t below is a view into the bytes the header was parsed from, never a
 * copy, and is not NUL-terminated. It is valid for as long as those bytes are, so whoever shows a
 * header to hooks must keep its bytes (and the TLV array) alive and unchanged as long as that.
 * {NULL, 0} means "absent"; a TLV that was present but empty has a non-NULL ptr and len 0.
 */

/* One v2 TLV as received: read-only. */
typedef struct tp_pp_tlv {
    uint8_t type;   /* a TP_PP_TLV_* value, a custom 0xE0..0xEF or any other type */
    tp_str_t value; /* the value bytes */
} tp_pp_tlv_t;

/* The SSL TLV (0x20), decoded: read-only. All zero when present is false. */
typedef struct tp_pp_ssl {
    bool present;     /* the header carried an SSL TLV (the first one is decoded) */
    uint8_t client;   /* TP_PP_SSL_CLIENT_* bits */
    uint32_t verify;  /* 0 when the client's certificate was verified, non-zero otherwise */
    tp_str_t version; /* sub-TLV TP_PP_SSL_VERSION */
    tp_str_t cn;      /* sub-TLV TP_PP_SSL_CN */
    tp_str_t cipher;  /* sub-TLV TP_PP_SSL_CIPHER */
    tp_str_t sig_alg; /* sub-TLV TP_PP_SSL_SIG_ALG */
    tp_str_t key_alg; /* sub-TLV TP_PP_SSL_KEY_ALG */
} tp_pp_ssl_t;

/*
 * A parsed PROXY protocol header: read-only for apps.
 *
 * The client's real addresses are src and dst only when command is TP_PP_CMD_PROXY and family is
 * TP_PP_FAMILY_INET or TP_PP_FAMILY_INET6. In every other case (LOCAL, UNSPEC, UNIX) the runtime
 * keeps the socket's own addresses: a LOCAL header's addresses, when the sender included them, are
 * parsed and checked like any others but describe the proxy's own connection.
 */
typedef struct tp_proxy_header {
    uint8_t version;             /* 1 (text) or 2 (binary) */
    tp_pp_command_t command;     /* LOCAL or PROXY; v1 is always PROXY */
    tp_pp_transport_t transport; /* STREAM, DGRAM or UNSPEC */
    tp_pp_family_t family;       /* INET, INET6, UNIX or UNSPEC */
    tp_addr_t src;               /* INET/INET6: the client's address and port; zero otherwise */
    tp_addr_t dst;               /* INET/INET6: the address and port the client connected to */
    tp_str_t src_path;           /* UNIX: the client's socket path (abstract: starts with NUL) */
    tp_str_t dst_path;           /* UNIX: the path the client connected to */

    /* v2 TLVs in wire order, NOOP (0x04) left out; the array is the caller-provided storage of
     * the parser, so it lives as long as that storage. Empty for v1. */
    const tp_pp_tlv_t *tlvs;
    size_t ntlvs;

    /* The first TLV of each well-known type, decoded for convenience ({NULL, 0} if absent). */
    tp_str_t alpn;        /* TP_PP_TLV_ALPN */
    tp_str_t authority;   /* TP_PP_TLV_AUTHORITY */
    tp_str_t unique_id;   /* TP_PP_TLV_UNIQUE_ID (at most 128 bytes, checked) */
    tp_str_t netns;       /* TP_PP_TLV_NETNS */
    bool crc32c_present;  /* the header carried a CRC32C TLV */
    bool crc32c_verified; /* ... and it matched: a header whose CRC32C does not is refused, so
                             this equals crc32c_present on every header an app sees */
    tp_pp_ssl_t ssl;      /* TP_PP_TLV_SSL and its sub-TLVs */
} tp_proxy_header_t;

/*
 * The value of the first TLV of `type` in the header, or {NULL, 0} when there is none (always for
 * NOOP and for v1 headers). Custom types 0xE0..0xEF are read this way.
 */
tp_str_t tp_proxy_header_tlv(const tp_proxy_header_t *header, uint8_t type);

#ifdef __cplusplus
}
#endif
#endif
