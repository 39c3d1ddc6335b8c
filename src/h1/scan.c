/* scan.c: a strict HTTP/1.1 request framing scanner (RFC 9112) that vets every byte llhttp parses.
 */
#include "h1/scan.h"

#include <string.h>

enum {
    S_START,          /* before the request line: empty lines (CRLF) are skipped (RFC 9112 2.2) */
    S_START_LF,       /* a CR before the request line; LF must follow */
    S_METHOD,         /* method = token */
    S_TARGET_FIRST,   /* the byte after the single SP that ends the method */
    S_TARGET,         /* request-target: visible ASCII only */
    S_VERSION,        /* "HTTP/" DIGIT "." DIGIT, then CR (a response: SP) */
    S_STATUS,         /* a response's 3DIGIT status code, then SP or CR */
    S_REASON,         /* reason-phrase: HTAB, SP, VCHAR, obs-text */
    S_LINE_LF,        /* CR seen at the end of a start or field line; LF must follow */
    S_FIELD_START,    /* a field line, or the empty line that ends the section */
    S_NAME,           /* field-name = token, then ':' at once */
    S_VALUE,          /* field-value: SP, HTAB, VCHAR, obs-text */
    S_END_LF,         /* CR of the empty line ending the section; LF must follow */
    S_HEAD_DONE,      /* waits for tp__h1_scan_body */
    S_BODY_LENGTH,    /* Content-Length bytes */
    S_CHUNK_FIRST,    /* the first byte of a chunk size */
    S_CHUNK_SIZE,     /* more hex digits, ';' or CR */
    S_EXT_NAME_FIRST, /* after ';': a chunk-ext-name (token) */
    S_EXT_NAME,       /* more of the name, '=', ';' or CR */
    S_EXT_VALUE,      /* after '=': a token or a quoted-string */
    S_EXT_TOKEN,      /* more of a token value, ';' or CR */
    S_EXT_QUOTED,     /* inside a quoted-string */
    S_EXT_PAIR,       /* after a backslash in a quoted-string */
    S_EXT_QUOTE_END,  /* after the closing quote: ';' or CR */
    S_CHUNK_LF,       /* CR of a chunk-size line; LF must follow */
    S_CHUNK_DATA,     /* chunk-data bytes */
    S_DATA_CR,        /* the CR that must follow chunk data */
    S_DATA_LF,        /* and its LF */
    S_TUNNEL,         /* not HTTP any more: everything passes */
    S_MESSAGE_DONE,   /* waits for tp__h1_scan_reset */
    S_ERROR,
};

/* tchar (RFC 9110 5.6.2): the characters of a token ("!#$%&'*+-.^_`|~", digits, letters), as
 * two 64-bit sets for the bytes 0-63 and 64-127. */
static bool is_tchar(unsigned char c) {
    static const uint64_t lo = 0x3ff6cfa00000000ULL, hi = 0x57ffffffc7fffffeULL;
    return c < 64 ? (lo >> c) & 1 : c < 128 ? (hi >> (c - 64)) & 1 : false;
}

/* A byte of a field value or reason phrase that needs no closer look: VCHAR, SP, HTAB, obs-text. */
static bool is_plain(unsigned char c) { return (c >= 0x20 && c != 0x7f) || c == '\t'; }

/*
 * How many bytes from data[i] on are plain, eight at a time (field values are most of a head):
 * a word with no byte below 0x20 and none equal to 0x7f is all plain. The test may flag a word
 * that is in fact plain (a borrow), never the other way; the byte loop then decides.
 */
static size_t skip_plain8(const char *data, size_t i, size_t len) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (len - i >= 8) {
        uint64_t x;
        memcpy(&x, data + i, 8);
        uint64_t below = (x - ones * 0x20) & ~x & highs; /* a byte < 0x20 (bytes >= 0x80 never) */
        uint64_t del = x ^ (ones * 0x7f);
        uint64_t is_del = (del - ones) & ~del & highs; /* a byte == 0x7f */
        if (below | is_del)
            break;
        i += 8;
    }
    return i;
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t fail(tp_h1_scan_t *s, size_t at, unsigned status, const char *why) {
    s->state = S_ERROR;
    s->status = (uint16_t)status;
    s->err = why;
    return at;
}

/* What a control character deserves in a field line, a request line, a chunk line. */
static const char *ctl_reason(unsigned char c, const char *where_nul, const char *where_ctl) {
    if (c == '\n')
        return "bare LF (LF without CR) in the message framing";
    if (c == '\r')
        return "bare CR (CR without LF) in the message framing";
    return c == 0 ? where_nul : where_ctl;
}

void tp__h1_scan_reset(tp_h1_scan_t *s) { memset(s, 0, sizeof(*s)); }

void tp__h1_scan_reset_response(tp_h1_scan_t *s) {
    memset(s, 0, sizeof(*s));
    s->response = true;
    s->state = S_VERSION;
}

void tp__h1_scan_body(tp_h1_scan_t *s, tp_h1_framing_t framing, uint64_t length) {
    if (s->state != S_HEAD_DONE)
        return;
    s->remaining = 0;
    s->body_bytes = 0;
    switch (framing) {
    case TP_H1_FRAMING_LENGTH:
        s->remaining = length;
        s->state = length ? S_BODY_LENGTH : S_MESSAGE_DONE;
        break;
    case TP_H1_FRAMING_CHUNKED:
        s->state = S_CHUNK_FIRST;
        s->line_len = 0;
        break;
    case TP_H1_FRAMING_TUNNEL:
    case TP_H1_FRAMING_CLOSE: s->state = S_TUNNEL; break;
    default: s->state = S_MESSAGE_DONE; break;
    }
}

bool tp__h1_scan_failed(const tp_h1_scan_t *s) { return s->state == S_ERROR; }
bool tp__h1_scan_head_done(const tp_h1_scan_t *s) { return s->state == S_HEAD_DONE; }
bool tp__h1_scan_message_done(const tp_h1_scan_t *s) { return s->state == S_MESSAGE_DONE; }

/* One byte of a chunk-size line after the size (extensions, RFC 9112 7.1.1); 0 or an error. */
static const char *chunk_ext_byte(tp_h1_scan_t *s, unsigned char c) {
    switch (s->state) {
    case S_EXT_NAME_FIRST:
        if (!is_tchar(c))
            break;
        s->state = S_EXT_NAME;
        return NULL;
    case S_EXT_NAME:
    case S_EXT_TOKEN:
        if (is_tchar(c))
            return NULL;
        if (c == '=' && s->state == S_EXT_NAME) {
            s->state = S_EXT_VALUE;
            return NULL;
        }
        if (c == ';') {
            s->state = S_EXT_NAME_FIRST;
            return NULL;
        }
        break;
    case S_EXT_VALUE:
        if (c == '"') {
            s->state = S_EXT_QUOTED;
            return NULL;
        }
        if (!is_tchar(c))
            break;
        s->state = S_EXT_TOKEN;
        return NULL;
    case S_EXT_QUOTED:
        if (c == '"')
            s->state = S_EXT_QUOTE_END;
        else if (c == '\\')
            s->state = S_EXT_PAIR;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ctl_reason(c, "NUL byte in a chunk extension",
                              "control character in a chunk extension");
        return NULL;
    case S_EXT_PAIR:
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return ctl_reason(c, "NUL byte in a chunk extension",
                              "control character in a chunk extension");
        s->state = S_EXT_QUOTED;
        return NULL;
    case S_EXT_QUOTE_END:
        if (c == ';') {
            s->state = S_EXT_NAME_FIRST;
            return NULL;
        }
        break;
    default: break;
    }
    if (c == ' ' || c == '\t')
        return "whitespace in a chunk-size line";
    if (c == '\r')
        return "malformed chunk extension";
    if (c < 0x20 || c == 0x7f)
        return ctl_reason(c, "NUL byte in a chunk extension",
                          "control character in a chunk extension");
    return "malformed chunk extension";
}

size_t tp__h1_scan_run(tp_h1_scan_t *s, const char *data, size_t len) {
    static const char version[] = "HTTP/";
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)data[i];
        switch (s->state) {
        case S_START:
            if (c == '\r') {
                s->state = S_START_LF;
                break;
            }
            if (!is_tchar(c))
                return fail(s, i, 400,
                            c == '\n' ? "bare LF (LF without CR) in the message framing"
                                      : "invalid character at the start of the request line");
            s->state = S_METHOD;
            break;
        case S_START_LF:
            if (c != '\n')
                return fail(s, i, 400, "bare CR (CR without LF) in the message framing");
            s->state = S_START;
            break;
        case S_METHOD:
            if (c == ' ')
                s->state = S_TARGET_FIRST;
            else if (!is_tchar(c))
                return fail(s, i, 400, "invalid character in the method");
            break;
        case S_TARGET_FIRST:
        case S_TARGET:
            if (s->state == S_TARGET) /* the bulk of the target, without the switch per byte */
                while (c > 0x20 && c < 0x7f) {
                    if (++i == len)
                        return i;
                    c = (unsigned char)data[i];
                }
            if (c == ' ' && s->state == S_TARGET_FIRST) {
                return fail(s, i, 400, "more than one space in the request line");
            } else if (c == ' ') {
                s->state = S_VERSION;
                s->sub = 0;
                s->line_len = 0;
            } else if (c > 0x20 && c < 0x7f) {
                s->state = S_TARGET;
            } else if (c == '\r' || c == '\n') {
                return fail(s, i, 400, "request line without an HTTP version");
            } else {
                return fail(s, i, 400,
                            c == 0      ? "NUL byte in the request target"
                            : c >= 0x80 ? "non-ASCII byte in the request target (percent-encode it)"
                                        : "whitespace or control character in the request target");
            }
            break;
        case S_VERSION:
            /* "HTTP/" (case-sensitive) DIGIT "." DIGIT; line_len keeps major * 10 + minor. */
            if (s->sub < 5) {
                if (c != (unsigned char)version[s->sub])
                    return fail(s, i, 400,
                                c == ' ' && s->sub == 0 ? "more than one space in the request line"
                                                        : "malformed HTTP version");
            } else if (s->sub == 5 || s->sub == 7) {
                if (c < '0' || c > '9')
                    return fail(s, i, 400, "malformed HTTP version");
                s->line_len = s->line_len * 10 + (uint32_t)(c - '0');
            } else if (s->sub == 6) {
                if (c != '.')
                    return fail(s, i, 400, "malformed HTTP version");
            } else {
                if (c != (s->response ? ' ' : '\r'))
                    return fail(s, i, 400,
                                c == '\n' ? "bare LF (LF without CR) in the message framing"
                                          : "malformed HTTP version");
                if (s->line_len != 10 && s->line_len != 11)
                    return fail(s, i, 505, "unsupported HTTP version (1.0 and 1.1 only)");
                s->state = s->response ? S_STATUS : S_LINE_LF;
                s->sub = s->response ? 0 : 1; /* the next field line is the first */
                break;
            }
            s->sub++;
            break;
        case S_STATUS:
            if (s->sub < 3) {
                if (c < '0' || c > '9')
                    return fail(s, i, 400, "malformed status code");
                s->sub++;
                break;
            }
            /* The SP before an empty reason is often left out; the line is unambiguous without. */
            if (c == ' ') {
                s->state = S_REASON;
            } else if (c == '\r') {
                s->state = S_LINE_LF;
                s->sub = 1;
            } else {
                return fail(s, i, 400,
                            c == '\n' ? "bare LF (LF without CR) in the message framing"
                                      : "malformed status code");
            }
            break;
        case S_REASON:
            while (is_plain(c)) {
                if (++i == len)
                    return i;
                c = (unsigned char)data[i];
            }
            if (c == '\r') {
                s->state = S_LINE_LF;
                s->sub = 1;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return fail(s, i, 400,
                            ctl_reason(c, "NUL byte in the reason phrase",
                                       "control character in the reason phrase"));
            }
            break;
        case S_LINE_LF:
            if (c != '\n')
                return fail(s, i, 400, "bare CR (CR without LF) in the message framing");
            s->state = S_FIELD_START;
            break;
        case S_FIELD_START:
            if (c == '\r') {
                s->state = S_END_LF;
            } else if (c == ' ' || c == '\t') {
                /* RFC 9112 5.2 and 2.2: obs-fold, or whitespace before the first field. */
                return fail(s, i, 400,
                            s->sub ? "whitespace between the start line and the first field"
                                   : "obsolete line folding (obs-fold) in a field line");
            } else if (c == ':') {
                return fail(s, i, 400, "empty field name");
            } else if (is_tchar(c)) {
                s->state = S_NAME;
            } else {
                return fail(s, i, 400,
                            c < 0x20 || c == 0x7f ? ctl_reason(c, "NUL byte in a field name",
                                                               "control character in a field name")
                                                  : "invalid character in a field name");
            }
            s->sub = 0;
            break;
        case S_NAME:
            while (is_tchar(c)) {
                if (++i == len)
                    return i;
                c = (unsigned char)data[i];
            }
            if (c == ':')
                s->state = S_VALUE;
            else if (c == ' ' || c == '\t')
                return fail(s, i, 400, "whitespace between a field name and its colon");
            else if (c == '\r' || c == '\n')
                return fail(s, i, 400, "field line without a colon");
            else if (!is_tchar(c))
                return fail(s, i, 400,
                            c < 0x20 || c == 0x7f ? ctl_reason(c, "NUL byte in a field name",
                                                               "control character in a field name")
                                                  : "invalid character in a field name");
            break;
        case S_VALUE:
            i = skip_plain8(data, i, len);
            if (i == len)
                return i;
            c = (unsigned char)data[i];
            while (is_plain(c)) {
                if (++i == len)
                    return i;
                c = (unsigned char)data[i];
            }
            if (c == '\r')
                s->state = S_LINE_LF;
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(s, i, 400,
                            ctl_reason(c, "NUL byte in a field value",
                                       "control character in a field value"));
            break;
        case S_END_LF:
            if (c != '\n')
                return fail(s, i, 400, "bare CR (CR without LF) in the message framing");
            s->state = s->trailers ? S_MESSAGE_DONE : S_HEAD_DONE;
            return i + 1;
        case S_HEAD_DONE:
        case S_MESSAGE_DONE:
        case S_ERROR: return i;
        case S_TUNNEL: return len;
        case S_BODY_LENGTH: {
            size_t n = len - i;
            if (n > s->remaining)
                n = (size_t)s->remaining;
            s->remaining -= n;
            s->body_bytes += n;
            i += n;
            if (s->remaining == 0) {
                s->state = S_MESSAGE_DONE;
                return i;
            }
            continue;
        }
        case S_CHUNK_FIRST:
        case S_CHUNK_SIZE: {
            int v = hex_value(c);
            if (v >= 0) {
                if (s->remaining > (UINT64_MAX >> 4))
                    return fail(s, i, 400, "chunk size overflow");
                s->remaining = (s->remaining << 4) | (uint64_t)v;
                s->state = S_CHUNK_SIZE;
            } else if (s->state == S_CHUNK_FIRST) {
                return fail(s, i, 400,
                            c == '\r'               ? "empty chunk size"
                            : c == ' ' || c == '\t' ? "whitespace in a chunk-size line"
                            : c < 0x20              ? ctl_reason(c, "NUL byte in a chunk size",
                                                                 "control character in a chunk size")
                                                    : "invalid chunk size (hex digits only)");
            } else if (c == '\r') {
                s->state = S_CHUNK_LF;
            } else if (c == ';') {
                s->state = S_EXT_NAME_FIRST;
            } else {
                return fail(s, i, 400,
                            c == ' ' || c == '\t' ? "whitespace in a chunk-size line"
                            : c < 0x20            ? ctl_reason(c, "NUL byte in a chunk size",
                                                               "control character in a chunk size")
                                                  : "invalid chunk size (hex digits only)");
            }
            if (++s->line_len > TP_H1_MAX_CHUNK_LINE)
                return fail(s, i, 400, "chunk-size line too long");
            break;
        }
        case S_EXT_NAME_FIRST:
        case S_EXT_NAME:
        case S_EXT_VALUE:
        case S_EXT_TOKEN:
        case S_EXT_QUOTED:
        case S_EXT_PAIR:
        case S_EXT_QUOTE_END: {
            if (c == '\r' && (s->state == S_EXT_NAME || s->state == S_EXT_TOKEN ||
                              s->state == S_EXT_QUOTE_END)) {
                s->state = S_CHUNK_LF;
            } else {
                const char *why = chunk_ext_byte(s, c);
                if (why)
                    return fail(s, i, 400, why);
            }
            if (++s->line_len > TP_H1_MAX_CHUNK_LINE)
                return fail(s, i, 400, "chunk-size line too long");
            break;
        }
        case S_CHUNK_LF:
            if (c != '\n')
                return fail(s, i, 400, "bare CR (CR without LF) in the message framing");
            if (s->remaining == 0) { /* last-chunk: the trailer section follows */
                s->state = S_FIELD_START;
                s->trailers = true;
            } else {
                s->state = S_CHUNK_DATA;
            }
            break;
        case S_CHUNK_DATA: {
            size_t n = len - i;
            if (n > s->remaining)
                n = (size_t)s->remaining;
            s->remaining -= n;
            s->body_bytes += n;
            i += n;
            if (s->remaining == 0)
                s->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
            if (c != '\r')
                return fail(s, i, 400, "chunk data not followed by CRLF (longer than its size)");
            s->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (c != '\n')
                return fail(s, i, 400, "bare CR (CR without LF) in the message framing");
            s->state = S_CHUNK_FIRST;
            s->line_len = 0;
            break;
        default: return fail(s, i, 400, "internal scanner state");
        }
        i++;
    }
    return i;
}
