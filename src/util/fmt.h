/* fmt.h: decimal and hex digits without printf, for hot paths. */
#ifndef TP_UTIL_FMT_H
#define TP_UTIL_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Writes v in decimal (at most 20 digits, no NUL) to out; returns the length. */
size_t tp__fmt_u64(char *out, uint64_t v);

/* Writes v in lower-case hex (at most 16 digits, no NUL) to out; returns the length. */
size_t tp__fmt_hex(char *out, uint64_t v);

#endif
