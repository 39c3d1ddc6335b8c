/* client_hello.h: a sans-IO parser of a TLS ClientHello (SNI, ALPN, versions) for the SNI peek. */
#ifndef TP_TLS_CLIENT_HELLO_H
#define TP_TLS_CLIENT_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "turnpike/tls.h"

/* The largest ClientHello handshake message accepted (its 24-bit length could say 16 MiB). */
#define TP_TLS_HELLO_MAX 65536

/*
 * Parses the ClientHello that the TLS records at the start of `in` carry. Returns the length of
 * the records that hold the whole message (> 0) and fills *out, 0 when the bytes are a valid
 * beginning and more are needed, or a negative tp_err_t with a static *reason:
 *   TP_ERR_PROTOCOL   the bytes are not a TLS ClientHello (decided as early as possible: the first
 *                     byte of an HTTP request is enough) or the message is malformed;
 *   TP_ERR_TOO_LARGE  the message is longer than TP_TLS_HELLO_MAX, or it is split across records
 *                     and `scratch` is NULL or smaller than the message (then call again with a
 *                     scratch buffer of at least `in`'s length).
 * The views in *out point into `in`, or into `scratch` when the message spans records.
 */
int tp__tls_hello_parse(const uint8_t *in, size_t len, uint8_t *scratch, size_t scratch_cap,
                        tp_tls_client_hello_t *out, const char **reason);

#endif
