/* parse.h: PROXY protocol v1/v2 headers: a strict sans-IO parser and the matching encoders. */
#ifndef TP_PROXYPROTO_PARSE_H
#define TP_PROXYPROTO_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turnpike/proxy_protocol.h"

/*
 * Parses the PROXY protocol header at the start of buf[0..len). Pure: no I/O, no allocation, no
 * global state; call it again with the longer buffer whenever more bytes arrive.
 *
 * accept:  TP_PP_V1, TP_PP_V2 or both; a header of another version is an error.
 * max_v2:  the largest v2 header accepted, 16 fixed bytes included; 0 means TP_PP_V2_DEFAULT_MAX
 *          (4096), values above TP_PP_V2_MAX_LEN (16 + 65535) are lowered to it. A v1 line is
 *          always limited to TP_PP_V1_MAX_LEN (107) bytes, CRLF included.
 * out:     filled on success; unspecified after 0 or an error. Its strings are views into buf.
 * tlv_storage, tlv_cap: where the raw v2 TLVs go (out->tlvs points there). With tlv_cap 0 they
 *          are not kept (tlv_storage may be NULL) but still checked and decoded into the
 *          convenience fields; more TLVs than a non-zero tlv_cap is an error.
 * reason:  optional; on error set to a static description of what is wrong ("v1 port out of
 *          range", "TLV 0x20 overruns the header"), NULL otherwise.
 *
 * Returns:
 *   > 0  the header is complete and valid: its length, the number of bytes to consume (what
 *        follows in buf is the client's payload and is not looked at);
 *   0    buf is a valid beginning of a header, more bytes are needed (never when len is enough
 *        to tell it is wrong: "GET " fails at its first byte);
 *   TP_ERR_PROTOCOL   the bytes are not a valid header;
 *   TP_ERR_TOO_LARGE  no CRLF in the first 107 bytes of a v1 line, a v2 header longer than
 *                     max_v2, or more TLVs than tlv_cap;
 *   TP_ERR_INVAL      NULL out, no version in accept, or a NULL tlv_storage with a non-zero cap.
 */
int tp__pp_parse(const uint8_t *buf, size_t len, unsigned accept, size_t max_v2,
                 tp_proxy_header_t *out, tp_pp_tlv_t *tlv_storage, size_t tlv_cap,
                 const char **reason);

/*
 * Writes a v1 line for a TCP connection from src to dst (both AF_INET or both AF_INET6; IPv6
 * scope ids are not carried), or "PROXY UNKNOWN\r\n" when both are NULL. Adds a NUL after the
 * line when cap leaves room for it (a TP_PP_V1_MAX_LEN + 1 buffer always does).
 * Returns the line's length (NUL not counted), TP_ERR_INVAL for a NULL out, one NULL address,
 * mismatched or unsupported families, TP_ERR_TOO_LARGE when cap is too small.
 */
int tp__pp_encode_v1(char *out, size_t cap, const tp_addr_t *src, const tp_addr_t *dst);

/*
 * Writes a v2 header: command TP_PP_CMD_LOCAL or TP_PP_CMD_PROXY; src and dst both AF_INET or
 * both AF_INET6 (transport STREAM), or both NULL for an AF_UNSPEC header without addresses; then
 * the TLVs in order, values written as given; with add_crc32c a CRC32C TLV is put first and
 * filled in. Returns the header's length, TP_ERR_INVAL for a NULL out, a bad command, one NULL
 * address, mismatched or unsupported families, a CRC32C TLV among tlvs (ask for add_crc32c instead)
 * or a value longer than 65535 bytes, TP_ERR_TOO_LARGE when the header would pass TP_PP_V2_MAX_LEN
 * or cap.
 */
int tp__pp_encode_v2(uint8_t *out, size_t cap, int command, const tp_addr_t *src,
                     const tp_addr_t *dst, const tp_pp_tlv_t *tlvs, size_t ntlvs, bool add_crc32c);

/* CRC32C (Castagnoli, RFC 4960 appendix B) of p[0..n), continuing from crc (0 to start). */
uint32_t tp__pp_crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif
