/* turnpike/common.h: error codes, byte strings, socket addresses and CIDR sets shared by the API.
 */
#ifndef TURNPIKE_COMMON_H
#define TURNPIKE_COMMON_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TP_VERSION_STRING "0.1.0"

/*
 * Errors. Every fallible function returns 0 (or a non-negative count) on success and one of these
 * negative codes on failure. Codes from dependencies (libuv, GnuTLS, ...) are translated at the
 * boundary; the original code goes to the log, never to the caller.
 */
typedef enum tp_err {
    TP_OK = 0,
    TP_ERR_NOMEM = -1,        /* an allocation failed */
    TP_ERR_INVAL = -2,        /* an argument or a value is malformed */
    TP_ERR_RANGE = -3,        /* a value is outside its allowed range */
    TP_ERR_NOTFOUND = -4,     /* a key, a name or a file does not exist */
    TP_ERR_IO = -5,           /* a system call failed (see the log for errno) */
    TP_ERR_ADDRINUSE = -6,    /* a listen address is taken */
    TP_ERR_REFUSED = -7,      /* the peer refused the connection */
    TP_ERR_TIMEOUT = -8,      /* a deadline passed */
    TP_ERR_CLOSED = -9,       /* the flow is gone */
    TP_ERR_PROTOCOL = -10,    /* the peer broke the protocol */
    TP_ERR_DNS = -11,         /* name resolution failed */
    TP_ERR_PROHIBITED = -12,  /* the policy forbids it */
    TP_ERR_TOO_LARGE = -13,   /* a limit was exceeded */
    TP_ERR_STATE = -14,       /* the call is not valid in the object's current state */
    TP_ERR_UNREACHABLE = -15, /* no route to the destination */
    TP_ERR_CONFIG = -16,      /* the configuration is invalid */
} tp_err_t;

/* Returns a static, human-readable description of a tp_err_t code; never NULL. */
const char *tp_strerror(int err);

/* A borrowed, not necessarily NUL-terminated byte string. {NULL, 0} means "absent". */
typedef struct tp_str {
    const char *ptr;
    size_t len;
} tp_str_t;

/* Makes a tp_str_t from a NUL-terminated string (NULL gives the absent string). */
tp_str_t tp_str(const char *cstr);

/* True when both strings have the same bytes. Not constant-time: see tp_str_eq_ct(). */
bool tp_str_eq(tp_str_t a, tp_str_t b);

/* True when both strings are equal ignoring ASCII case. */
bool tp_str_eq_nocase(tp_str_t a, tp_str_t b);

/*
 * Constant-time check that `s` is exactly `prefix` followed by `secret`, for credentials: the time
 * taken depends on the lengths only, never on where the bytes differ. False if `secret` is NULL.
 */
bool tp_str_eq_ct(tp_str_t s, const char *prefix, const char *secret);

/* An IPv4 or IPv6 socket address (port included). */
typedef struct tp_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
} tp_addr_t;

/* Longest text tp_addr_format() writes, NUL included: "[ffff:...:ffff%scope]:65535". */
#define TP_ADDR_STRLEN 64

/*
 * Parses "1.2.3.4:80", "[::1]:443" or (with allow_no_port) a bare address whose port becomes 0.
 * Returns 0, or TP_ERR_INVAL when `text` is not a numeric address.
 */
int tp_addr_parse(tp_addr_t *addr, const char *text, bool allow_no_port);

/* Writes "ip:port" ("[ip]:port" for IPv6) into buf (at least TP_ADDR_STRLEN bytes); returns buf. */
char *tp_addr_format(const tp_addr_t *addr, char *buf, size_t size);

/* Writes the IP alone (no port, no brackets) into buf; returns buf. */
char *tp_addr_format_ip(const tp_addr_t *addr, char *buf, size_t size);

/* The port in host byte order. */
uint16_t tp_addr_port(const tp_addr_t *addr);

/* Sets the port (host byte order). */
void tp_addr_set_port(tp_addr_t *addr, uint16_t port);

/* The length to pass to bind()/connect() for this address. */
socklen_t tp_addr_len(const tp_addr_t *addr);

/* True when both addresses have the same family, IP and port. */
bool tp_addr_eq(const tp_addr_t *a, const tp_addr_t *b);

/* A set of IPv4 and IPv6 prefixes ("10.0.0.0/8", "::1/128", or a bare address for a host). */
typedef struct tp_cidr_set tp_cidr_set_t;

/*
 * Parses a comma- or space-separated list of prefixes into a new set. On a bad entry returns NULL
 * and, when err_at is not NULL, points it at the offending entry within `text`.
 */
tp_cidr_set_t *tp_cidr_set_new(const char *text, const char **err_at);

/* Adds one prefix; returns 0 or TP_ERR_INVAL / TP_ERR_NOMEM. */
int tp_cidr_set_add(tp_cidr_set_t *set, const char *prefix);

/* True when the address (its IP; the port is ignored) lies in one of the prefixes. NULL set: false.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as the IPv4 address it carries. */
bool tp_cidr_set_contains(const tp_cidr_set_t *set, const tp_addr_t *addr);

/* The number of prefixes in the set (0 for NULL). */
size_t tp_cidr_set_count(const tp_cidr_set_t *set);

/* Frees a set made by tp_cidr_set_new(); NULL is fine. */
void tp_cidr_set_del(tp_cidr_set_t *set);

/*
 * The ranges a proxy must not reach unless allowed explicitly: loopback, RFC 1918 private,
 * CGNAT, link-local, unique-local, multicast, unspecified, documentation and the other IANA
 * special-purpose ranges. True when the address lies in one of them.
 */
bool tp_addr_is_special(const tp_addr_t *addr);

#ifdef __cplusplus
}
#endif
#endif
