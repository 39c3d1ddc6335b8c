/* fields.c: checks of the field sections the application sends (RFC 9114 4.2, 4.3), the field
 * size rule of SETTINGS_MAX_FIELD_SECTION_SIZE, and QUIC varints for HTTP datagrams. */
#include <stdint.h>
#include <string.h>

#include "h3/h3_int.h"

uint64_t tp__h3_field_cost(size_t name_len, size_t value_len) {
    return (uint64_t)name_len + (uint64_t)value_len + 32;
}

/* RFC 9110 5.6.2 token characters, lowercase only (RFC 9114 4.2): a table, since every byte
 * of every field name the application sends is looked up. */
#define TC_DIGITS                                                                                  \
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,        \
    ['8'] = 1, ['9'] = 1
#define TC_LOWER                                                                                   \
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,        \
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,        \
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,        \
    ['y'] = 1, ['z'] = 1
static const unsigned char TCHAR[256] = {
    TC_DIGITS, TC_LOWER,   ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,
    ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['^'] = 1, ['_'] = 1,  ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

static bool is_tchar(unsigned char c) { return TCHAR[c] != 0; }

static inline bool name_is(const tp_h3_field_t *f, const char *lit) {
    size_t n = strlen(lit); /* folded: lit is always a literal */
    return f->name_len == n && memcmp(f->name, lit, n) == 0;
}

static bool value_ok(const tp_h3_field_t *f) {
    if (f->value_len && !f->value) {
        return false;
    }
    size_t i = 0;
    /* Eight bytes at a time while none is below 0x20 (the only ones that can be NUL, CR or LF;
     * the test may flag a clean word through a borrow, then the byte loop decides). */
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    while (f->value_len - i >= 8) {
        uint64_t x;
        memcpy(&x, f->value + i, 8);
        if ((x - ones * 0x20) & ~x & highs) {
            break;
        }
        i += 8;
    }
    for (; i < f->value_len; i++) {
        unsigned char c = (unsigned char)f->value[i];
        if (c == 0 || c == '\r' || c == '\n') {
            return false;
        }
    }
    /* RFC 9110 5.5: no leading or trailing whitespace. */
    if (f->value_len > 0) {
        char a = f->value[0];
        char z = f->value[f->value_len - 1];
        if (a == ' ' || a == '\t' || z == ' ' || z == '\t') {
            return false;
        }
    }
    return true;
}

enum {
    P_METHOD = 1 << 0,
    P_SCHEME = 1 << 1,
    P_AUTHORITY = 1 << 2,
    P_PATH = 1 << 3,
    P_PROTOCOL = 1 << 4,
    P_STATUS = 1 << 5,
};

static int pseudo_bit(const tp_h3_field_t *f) {
    switch (f->name_len) {
    case 5: return name_is(f, ":path") ? P_PATH : 0;
    case 7:
        return name_is(f, ":method")   ? P_METHOD
               : name_is(f, ":scheme") ? P_SCHEME
               : name_is(f, ":status") ? P_STATUS
                                       : 0;
    case 9: return name_is(f, ":protocol") ? P_PROTOCOL : 0;
    case 10: return name_is(f, ":authority") ? P_AUTHORITY : 0;
    default: return 0;
    }
}

int tp__h3_parse_status(const char *v, size_t len) {
    if (len != 3) {
        return -1;
    }
    int st = 0;
    for (size_t i = 0; i < 3; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        st = st * 10 + (v[i] - '0');
    }
    return st >= 100 ? st : -1;
}

#define FAIL(msg)                                                                                  \
    do {                                                                                           \
        if (why) {                                                                                 \
            *why = (msg);                                                                          \
        }                                                                                          \
        return TP_ERR_INVAL;                                                                       \
    } while (0)

int tp__h3_fields_check(const tp_h3_field_t *f, size_t n, tp_h3_section_t kind, const char **why) {
    int seen = 0;
    bool regular_seen = false;
    const tp_h3_field_t *method = NULL;
    const tp_h3_field_t *status = NULL;
    if (n > 0 && !f) {
        FAIL("no fields");
    }
    for (size_t i = 0; i < n; i++) {
        const tp_h3_field_t *x = &f[i];
        if (x->name_len == 0 || !x->name) {
            FAIL("empty field name");
        }
        if (!value_ok(x)) {
            FAIL("field value with NUL, CR, LF or edge whitespace");
        }
        if (x->name[0] == ':') {
            int bit = pseudo_bit(x);
            if (!bit) {
                FAIL("unknown pseudo-header");
            }
            if (regular_seen) {
                FAIL("pseudo-header after a regular field");
            }
            if (seen & bit) {
                FAIL("repeated pseudo-header");
            }
            bool is_request = kind == TP_H3_SECTION_REQUEST;
            bool is_response = kind == TP_H3_SECTION_RESPONSE || kind == TP_H3_SECTION_INFO;
            if ((is_request && bit == P_STATUS) || (is_response && bit != P_STATUS) ||
                kind == TP_H3_SECTION_TRAILERS) {
                FAIL("pseudo-header not allowed in this section");
            }
            if (x->value_len == 0) {
                FAIL("empty pseudo-header");
            }
            seen |= bit;
            if (bit == P_METHOD) {
                method = x;
            } else if (bit == P_STATUS) {
                status = x;
            }
            continue;
        }
        regular_seen = true;
        for (size_t k = 0; k < x->name_len; k++) {
            if (!is_tchar((unsigned char)x->name[k])) {
                FAIL("field name not a lowercase token");
            }
        }
        switch (x->name_len) { /* only these lengths can name a connection-specific field */
        case 2:
        case 7:
        case 10:
        case 16:
        case 17:
            if (name_is(x, "connection") || name_is(x, "keep-alive") ||
                name_is(x, "proxy-connection") || name_is(x, "transfer-encoding") ||
                name_is(x, "upgrade")) {
                FAIL("connection-specific field");
            }
            if (name_is(x, "te") && !(x->value_len == 8 && memcmp(x->value, "trailers", 8) == 0)) {
                FAIL("te other than trailers");
            }
            break;
        default: break;
        }
    }
    switch (kind) {
    case TP_H3_SECTION_REQUEST: {
        if (!method) {
            FAIL("request without :method");
        }
        bool connect = method->value_len == 7 && memcmp(method->value, "CONNECT", 7) == 0;
        if (connect && !(seen & P_PROTOCOL)) {
            /* RFC 9114 4.4: only :method and :authority. */
            if ((seen & (P_SCHEME | P_PATH)) || !(seen & P_AUTHORITY)) {
                FAIL("CONNECT needs :authority and no :scheme or :path");
            }
        } else {
            if ((seen & P_PROTOCOL) && !connect) {
                FAIL(":protocol without CONNECT");
            }
            /* Extended CONNECT (RFC 9220) and the other methods need all of these. */
            if ((seen & (P_SCHEME | P_PATH)) != (P_SCHEME | P_PATH)) {
                FAIL("request without :scheme or :path");
            }
            if ((seen & P_PROTOCOL) && !(seen & P_AUTHORITY)) {
                FAIL("extended CONNECT without :authority");
            }
        }
        break;
    }
    case TP_H3_SECTION_RESPONSE:
    case TP_H3_SECTION_INFO: {
        int st = status ? tp__h3_parse_status(status->value, status->value_len) : -1;
        if (st < 0 || st > 599) {
            FAIL("response without a valid :status");
        }
        bool interim = st < 200;
        if (kind == TP_H3_SECTION_INFO ? (!interim || st == 101) : interim) {
            /* RFC 9114 4.5: 101 is not used in HTTP/3. */
            FAIL(":status not allowed in this section");
        }
        break;
    }
    case TP_H3_SECTION_TRAILERS: break;
    }
    return 0;
}

size_t tp__h3_varint_encode(uint8_t *out, size_t cap, uint64_t v) {
    size_t n;
    uint8_t prefix;
    if (v < 64) {
        n = 1;
        prefix = 0x00;
    } else if (v < 16384) {
        n = 2;
        prefix = 0x40;
    } else if (v < (1ULL << 30)) {
        n = 4;
        prefix = 0x80;
    } else if (v < (1ULL << 62)) {
        n = 8;
        prefix = 0xc0;
    } else {
        return 0;
    }
    if (cap < n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        out[n - 1 - i] = (uint8_t)(v >> (8 * i));
    }
    out[0] |= prefix;
    return n;
}

size_t tp__h3_varint_decode(const uint8_t *in, size_t len, uint64_t *v) {
    if (len == 0) {
        return 0;
    }
    size_t n = (size_t)1 << (in[0] >> 6);
    if (len < n) {
        return 0;
    }
    uint64_t x = in[0] & 0x3f;
    for (size_t i = 1; i < n; i++) {
        x = x << 8 | in[i];
    }
    *v = x;
    return n;
}
