/* hash.h: the small non-cryptographic hashes of the per-worker tables (FNV-1a, a 64-bit mix). */
#ifndef TP_UTIL_HASH_H
#define TP_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's offset basis: the h to start from. Not for tables whose keys an attacker picks to
 * collide (the QUIC router keys its own hash). */
#define TP_FNV1A_INIT 0xcbf29ce484222325ULL

/* Folds n bytes into h (FNV-1a). */
static inline uint64_t tp__fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Folds a NUL-terminated string into h. */
static inline uint64_t tp__fnv1a_str(uint64_t h, const char *s) {
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The same over ASCII text folded to lower case (host names compare case-insensitively). */
static inline uint64_t tp__fnv1a_lower(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32u : c)) * 0x100000001b3ULL;
    }
    return h;
}

/* MurmurHash3's 64-bit finalizer: spreads every input bit over the word (FNV-1a alone leaves
 * short keys clustered). A bijection. */
static inline uint64_t tp__mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif
