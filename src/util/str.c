/* str.c: the byte-string helpers of common.h, including the constant-time credential check. */
#include <string.h>

#include "turnpike/common.h"

tp_str_t tp_str(const char *cstr) {
    return cstr ? (tp_str_t){cstr, strlen(cstr)} : (tp_str_t){NULL, 0};
}

bool tp_str_eq(tp_str_t a, tp_str_t b) {
    if (a.len != b.len)
        return false;
    return a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0;
}

static unsigned char ascii_lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

bool tp_str_eq_nocase(tp_str_t a, tp_str_t b) {
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (ascii_lower((unsigned char)a.ptr[i]) != ascii_lower((unsigned char)b.ptr[i]))
            return false;
    return true;
}

/*
 * Every byte of `s` is compared, whatever happened before, and the result is folded into one
 * accumulator read once at the end, so the time depends on the lengths alone. An absent `s` or an
 * empty secret never matches: an unset header must not unlock anything, and neither may a key that
 * was configured as "".
 */
bool tp_str_eq_ct(tp_str_t s, const char *prefix, const char *secret) {
    if (!secret || !s.ptr)
        return false;
    size_t plen = prefix ? strlen(prefix) : 0;
    size_t slen = strlen(secret);
    if (slen == 0)
        return false;
    size_t total = plen + slen;
    volatile unsigned char diff = s.len != total;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char want = 0;
        if (i < plen)
            want = (unsigned char)prefix[i];
        else if (i < total)
            want = (unsigned char)secret[i - plen];
        diff |= (unsigned char)((unsigned char)s.ptr[i] ^ want);
    }
    return diff == 0;
}
