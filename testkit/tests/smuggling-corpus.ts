/**
 * Request smuggling and malformed-framing cases for any Turnpike HTTP/1.1 on-ramp, as a table:
 * name, raw bytes (built for a target form: absolute for the forward proxy, origin form for a
 * reverse proxy), and the exact outcome. See docs/http1-strictness.md for the rules behind them,
 * and runSmugglingCase() below for how a row is checked. To add a case, add a row.
 */
import assert from 'node:assert/strict';

import { proxyStatusParams, rawTcp, sleep, type Endpoint, type RecordingOrigin } from '../src/index.js';

/** Where the requests go: how to write their target and Host for the proxy under test. */
export interface CorpusTarget {
    /** The request target for `path` ('http://127.0.0.1:PORT/path' for a forward proxy, '/path' for a reverse proxy). */
    target(path: string): string;
    /** The Host header value ('127.0.0.1:PORT'). */
    host: string;
}

/** One request as the origin must see it. */
export interface ExpectedRequest {
    method: string;
    /** The origin-form target the origin sees. */
    path: string;
    /** The exact body (latin1). */
    body: string;
}

export type Expectation =
    /**
     * Answered with this status and `Proxy-Status: turnpike; error=http_request_error` (details
     * matching `detail` when given), the connection closed, and not one byte reached the origin.
     */
    | { reject: number; detail?: RegExp }
    /**
     * Each request forwarded and answered in order, the origin saw exactly these requests with
     * exactly these bodies (no more, none cut or joined); then, with `thenReject`, the rest of the
     * bytes answered with that status and the connection closed.
     */
    | { forward: ExpectedRequest[]; thenReject?: number };

export interface SmugglingCase {
    name: string;
    /** Why it matters, or which rule it tests (RFC 9112 sections). */
    why: string;
    bytes(t: CorpusTarget): Buffer;
    expect: Expectation;
}

const bytes = (s: string) => Buffer.from(s, 'latin1');

/** A request with `fields` (each without CRLF) after Host, then `body` as is. */
function request(t: CorpusTarget, fields: string[], body = '', opts: { method?: string; path?: string; version?: string } = {}): string {
    const method = opts.method ?? 'POST';
    const path = opts.path ?? '/s';
    const version = opts.version ?? 'HTTP/1.1';
    return `${method} ${t.target(path)} ${version}\r\nHost: ${t.host}\r\n${fields.map((f) => f + '\r\n').join('')}\r\n${body}`;
}

/** A request whose head is given raw (request line and fields, each ending in what they end in). */
function rawHead(t: CorpusTarget, line: (target: string) => string, rest: string): string {
    return line(t.target('/s')) + rest;
}

const TE = 'Transfer-Encoding: chunked';
const HELLO_CHUNKED = '5\r\nhello\r\n0\r\n\r\n';
const post = (body: string, path = '/s'): ExpectedRequest => ({ method: 'POST', path, body });
const get = (path: string): ExpectedRequest => ({ method: 'GET', path, body: '' });
const reject = (status = 400, detail?: RegExp): Expectation => ({ reject: status, detail });

/** A GET for `path` to smuggle behind a body. */
const smuggled = (t: CorpusTarget, path = '/smuggled') => `GET ${t.target(path)} HTTP/1.1\r\nHost: ${t.host}\r\n\r\n`;

export const SMUGGLING_CORPUS: SmugglingCase[] = [
    // ---- CL.TE and TE.CL: both framings present (RFC 9112 6.3 (3)) ----
    {
        name: 'CL.TE: Content-Length then Transfer-Encoding',
        why: 'a CL-only peer reads 6 bytes, a TE peer reads an empty body and "G..." as the next request',
        bytes: (t) => bytes(request(t, ['Content-Length: 6', TE], '0\r\n\r\nG')),
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'TE.CL: Transfer-Encoding then Content-Length',
        why: 'a TE peer reads the chunk, a CL peer reads 3 bytes and takes "SMUGGLED..." as a request',
        bytes: (t) => bytes(request(t, [TE, 'Content-Length: 3'], '8\r\nSMUGGLED\r\n0\r\n\r\n')),
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'CL.TE with a whole request hidden after the last chunk',
        why: 'the classic: the hidden GET reaches the origin as a second request if the boundary moves',
        bytes: (t) => {
            const hidden = smuggled(t, '/admin');
            return bytes(request(t, [`Content-Length: ${5 + hidden.length}`, TE], '0\r\n\r\n' + hidden));
        },
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'Content-Length with Transfer-Encoding: gzip',
        why: 'CL with a non-chunked TE: still two framings',
        bytes: (t) => bytes(request(t, ['Content-Length: 5', 'Transfer-Encoding: gzip'], 'hello')),
        expect: reject(400, /Content-Length/),
    },

    // ---- TE.TE: Transfer-Encoding that peers could read differently (RFC 9112 6.1, 7) ----
    {
        name: 'TE: xchunked',
        why: 'not chunked: the length cannot be known (6.3 (4))',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: xchunked'], HELLO_CHUNKED)),
        expect: reject(400, /does not end with chunked/),
    },
    {
        name: 'TE: chunked with a trailing space',
        why: 'trailing OWS is not part of the value (RFC 9110 5.5): plain chunked, read the one way',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: chunked '], HELLO_CHUNKED)),
        expect: { forward: [post('hello')] },
    },
    {
        name: 'TE: chunked with a trailing tab',
        why: 'llhttp does not take "chunked\\t" as chunked while the RFC would: refused as ambiguous',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: chunked\t'], HELLO_CHUNKED)),
        expect: reject(400, /ambiguous/),
    },
    {
        name: 'TE: a tab instead of the space after the colon',
        why: 'leading OWS may be HTAB: plain chunked',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding:\tchunked'], HELLO_CHUNKED)),
        expect: { forward: [post('hello')] },
    },
    {
        name: 'TE: CHUNKED in capitals',
        why: 'coding names are case-insensitive (7): plain chunked',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: CHUNKED'], HELLO_CHUNKED)),
        expect: { forward: [post('hello')] },
    },
    {
        name: 'TE: space before the colon',
        why: 'RFC 9112 5.1: whitespace between name and colon MUST be rejected',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding : chunked'], HELLO_CHUNKED)),
        expect: reject(400, /whitespace between a field name and its colon/),
    },
    {
        name: 'TE: two Transfer-Encoding lines, both chunked',
        why: 'chunked applied twice (7)',
        bytes: (t) => bytes(request(t, [TE, TE], HELLO_CHUNKED)),
        expect: reject(400, /Transfer-Encoding/),
    },
    {
        name: 'TE: chunked, chunked',
        why: 'chunked applied twice (7)',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: chunked, chunked'], HELLO_CHUNKED)),
        expect: reject(400, /Transfer-Encoding/),
    },
    {
        name: 'TE: chunked, identity',
        why: 'chunked is not the final coding (6.3 (4))',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: chunked, identity'], HELLO_CHUNKED)),
        expect: reject(400, /Transfer-Encoding/),
    },
    {
        name: 'TE: identity, chunked',
        why: 'a coding Turnpike does not implement before chunked: 501 (6.1)',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: identity, chunked'], HELLO_CHUNKED)),
        expect: reject(501, /other than chunked/),
    },
    {
        name: 'TE: gzip and chunked on two lines',
        why: 'the lines add up to "gzip, chunked": not implemented, 501',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: gzip', TE], HELLO_CHUNKED)),
        expect: reject(501, /other than chunked/),
    },
    {
        name: 'TE: identity alone',
        why: 'not chunked (identity is no longer a coding)',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: identity'], 'hello')),
        expect: reject(400, /does not end with chunked/),
    },
    {
        name: 'TE: gzip alone',
        why: 'no final chunked in a request: 400 (6.3 (4))',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: gzip'], 'hello')),
        expect: reject(400, /does not end with chunked/),
    },
    {
        name: 'TE: quoted "chunked"',
        why: 'a quoted string is not a coding name',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: "chunked"'], HELLO_CHUNKED)),
        expect: reject(400),
    },
    {
        name: 'TE: vertical tab before chunked',
        why: 'VT is a control character, not whitespace',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: \x0bchunked'], HELLO_CHUNKED)),
        expect: reject(400, /control character/),
    },
    {
        name: 'TE: folded onto a continuation line',
        why: 'obs-fold (5.2): "Transfer-Encoding:" + " chunked" on the next line',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding:', ' chunked'], HELLO_CHUNKED)),
        expect: reject(400, /obs-fold/),
    },
    {
        name: 'TE: hidden behind a folded line',
        why: 'a peer that ignores obs-fold sees a Transfer-Encoding field',
        bytes: (t) => bytes(request(t, ['Content-Length: 16', 'X-A: 1', ' Transfer-Encoding: chunked'], HELLO_CHUNKED)),
        expect: reject(400, /obs-fold/),
    },
    {
        name: 'TE: in an HTTP/1.0 request',
        why: 'HTTP/1.0 has no chunked: its framing is faulty (6.1)',
        bytes: (t) => bytes(request(t, [TE], HELLO_CHUNKED, { version: 'HTTP/1.0' })),
        expect: reject(400, /HTTP\/1\.0/),
    },
    {
        name: 'TE: empty value',
        why: 'no coding at all',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding:'], '')),
        expect: reject(400, /empty Transfer-Encoding/),
    },
    {
        name: 'TE: parameters on chunked',
        why: 'chunked has no parameters (7)',
        bytes: (t) => bytes(request(t, ['Transfer-Encoding: chunked;foo=bar'], HELLO_CHUNKED)),
        expect: reject(400, /parameters/),
    },

    // ---- Content-Length (RFC 9110 8.6, RFC 9112 6.3 (5)) ----
    {
        name: 'CL: two identical lines',
        why: 'allowed to be merged by the RFC; refused here so no peer can split them',
        bytes: (t) => bytes(request(t, ['Content-Length: 5', 'Content-Length: 5'], 'hello')),
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'CL: two differing lines',
        why: 'which one? (6.3 (5))',
        bytes: (t) => bytes(request(t, ['Content-Length: 5', 'Content-Length: 11'], 'hello world')),
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'CL: a list "5, 5"',
        why: 'not 1*DIGIT',
        bytes: (t) => bytes(request(t, ['Content-Length: 5, 5'], 'hello')),
        expect: reject(400, /Content-Length/),
    },
    { name: 'CL: +5', why: 'a sign is not a digit', bytes: (t) => bytes(request(t, ['Content-Length: +5'], 'hello')), expect: reject(400, /Content-Length/) },
    { name: 'CL: -1', why: 'negative', bytes: (t) => bytes(request(t, ['Content-Length: -1'], 'hello')), expect: reject(400, /Content-Length/) },
    { name: 'CL: "5 0"', why: 'a space inside the number', bytes: (t) => bytes(request(t, ['Content-Length: 5 0'], 'hello')), expect: reject(400, /Content-Length/) },
    { name: 'CL: 0x5', why: 'hex', bytes: (t) => bytes(request(t, ['Content-Length: 0x5'], 'hello')), expect: reject(400, /Content-Length/) },
    { name: 'CL: empty', why: 'no digits', bytes: (t) => bytes(request(t, ['Content-Length:'], '')), expect: reject(400, /Content-Length/) },
    {
        name: 'CL: 2^64',
        why: 'overflows 64 bits: a wrapping parser would read 0',
        bytes: (t) => bytes(request(t, ['Content-Length: 18446744073709551616'], 'hello')),
        expect: reject(400, /Content-Length/),
    },
    {
        name: 'CL: leading zeros',
        why: '1*DIGIT allows them: the length is 5, and the origin gets exactly 5 bytes',
        bytes: (t) => bytes(request(t, ['Content-Length: 0005'], 'hello')),
        expect: { forward: [post('hello')] },
    },
    {
        name: 'CL: surrounded by spaces',
        why: 'OWS around a value is not part of it',
        bytes: (t) => bytes(request(t, ['Content-Length:   5  '], 'hello')),
        expect: { forward: [post('hello')] },
    },

    // ---- chunk sizes and extensions (RFC 9112 7.1) ----
    { name: 'chunk size 0x5', why: 'hex digits only, no prefix', bytes: (t) => bytes(request(t, [TE], '0x5\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /chunk size/) },
    { name: 'chunk size 5_0', why: 'no digit separators', bytes: (t) => bytes(request(t, [TE], '5_0\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /chunk size/) },
    { name: 'chunk size -5', why: 'no sign', bytes: (t) => bytes(request(t, [TE], '-5\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /chunk size/) },
    { name: 'chunk size +5', why: 'no sign', bytes: (t) => bytes(request(t, [TE], '+5\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /chunk size/) },
    {
        name: 'chunk size 2^64 + 5',
        why: 'a wrapping parser reads 5',
        bytes: (t) => bytes(request(t, [TE], '10000000000000005\r\nhello\r\n0\r\n\r\n')),
        expect: reject(400, /overflow/),
    },
    { name: 'chunk size with a leading space', why: 'no whitespace in the size', bytes: (t) => bytes(request(t, [TE], ' 5\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /whitespace/) },
    { name: 'chunk size with a trailing space', why: 'no whitespace in the size', bytes: (t) => bytes(request(t, [TE], '5 \r\nhello\r\n0\r\n\r\n')), expect: reject(400, /whitespace/) },
    { name: 'chunk size line ended by a bare CR', why: 'CR without LF', bytes: (t) => bytes(request(t, [TE], '5\rhello\r\n0\r\n\r\n')), expect: reject(400, /bare CR/) },
    { name: 'chunked body with LF-only line ends', why: 'bare LF (strict)', bytes: (t) => bytes(request(t, [TE], '5\nhello\n0\n\n')), expect: reject(400, /bare LF/) },
    { name: 'chunk extension with a bare CR', why: 'CR inside the chunk line', bytes: (t) => bytes(request(t, [TE], '5;a\rb\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /bare CR/) },
    { name: 'chunk extension with a bare LF', why: 'LF inside the chunk line', bytes: (t) => bytes(request(t, [TE], '5;a\nb\r\nhello\r\n0\r\n\r\n')), expect: reject(400, /bare LF/) },
    {
        name: 'chunk data longer than its size',
        why: 'no CRLF where the chunk should end: the rest must not become a request',
        bytes: (t) => bytes(request(t, [TE], '3\r\nhello\r\n0\r\n\r\n')),
        expect: reject(400, /not followed by CRLF/),
    },
    {
        name: 'last chunk ended by a bare LF',
        why: 'bare LF in the final line',
        bytes: (t) => bytes(request(t, [TE], '5\r\nhello\r\n0\r\n\n')),
        expect: reject(400, /bare LF/),
    },
    {
        name: 'folded trailer field',
        why: 'obs-fold in the trailer section',
        bytes: (t) => bytes(request(t, [TE], '5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n')),
        expect: reject(400, /obs-fold/),
    },
    {
        name: 'chunk sizes with leading zeros and an extension',
        why: 'valid: 1*HEXDIG and chunk-ext; the origin gets exactly the data',
        bytes: (t) => bytes(request(t, [TE], '0005;name=value\r\nhello\r\n6\r\n world\r\n000\r\nX-Trailer: 1\r\n\r\n')),
        expect: { forward: [post('hello world')] },
    },

    // ---- field and request lines (RFC 9112 2.2, 3, 5) ----
    { name: 'obs-fold in a header', why: '5.2: refused', bytes: (t) => bytes(request(t, ['X-A: 1', ' 2'], '', { method: 'GET' })), expect: reject(400, /obs-fold/) },
    { name: 'space before a colon', why: '5.1', bytes: (t) => bytes(request(t, ['X-A : 1'], '', { method: 'GET' })), expect: reject(400, /whitespace between a field name/) },
    {
        name: 'bare LF line ends in the head',
        why: '2.2: strict; a peer that splits on CRLF only reads a different head',
        bytes: (t) => bytes(rawHead(t, (u) => `GET ${u} HTTP/1.1\n`, `Host: ${t.host}\n\n`)),
        expect: reject(400, /bare LF/),
    },
    {
        name: 'bare CR inside a header value',
        why: '2.2: a peer may take CR as a line end',
        bytes: (t) => bytes(request(t, ['X-A: 1\rTransfer-Encoding: chunked'], '', { method: 'GET' })),
        expect: reject(400, /bare CR/),
    },
    {
        name: 'CR CR at the end of the head',
        why: 'CRLF CR X: not the end of the head',
        bytes: (t) => bytes(rawHead(t, (u) => `GET ${u} HTTP/1.1\r\n`, `Host: ${t.host}\r\n\rX\r\n\r\n`)),
        expect: reject(400, /bare CR/),
    },
    { name: 'NUL in a header value', why: 'C string truncation in a peer', bytes: (t) => bytes(request(t, ['X-A: a\0b'], '', { method: 'GET' })), expect: reject(400, /NUL/) },
    { name: 'NUL in a header name', why: 'Content-Length\\0 could be read as Content-Length', bytes: (t) => bytes(request(t, ['Content-Length\0: 5'], 'hello')), expect: reject(400, /NUL/) },
    { name: 'control character in a header value', why: 'only HTAB, SP, VCHAR, obs-text', bytes: (t) => bytes(request(t, ['X-A: a\x01b'], '', { method: 'GET' })), expect: reject(400, /control character/) },
    { name: 'NUL in the request target', why: 'truncation', bytes: (t) => bytes(rawHead(t, (u) => `GET ${u}\0x HTTP/1.1\r\n`, `Host: ${t.host}\r\n\r\n`)), expect: reject(400, /NUL/) },
    { name: 'tab in the request target', why: 'whitespace splits the request line differently', bytes: (t) => bytes(rawHead(t, (u) => `GET ${u}\tx HTTP/1.1\r\n`, `Host: ${t.host}\r\n\r\n`)), expect: reject(400, /request target/) },
    { name: 'control character in the request target', why: 'not a URI character', bytes: (t) => bytes(rawHead(t, (u) => `GET ${u}\x01 HTTP/1.1\r\n`, `Host: ${t.host}\r\n\r\n`)), expect: reject(400) },
    { name: 'two spaces in the request line', why: '3: single SP', bytes: (t) => bytes(rawHead(t, (u) => `GET  ${u} HTTP/1.1\r\n`, `Host: ${t.host}\r\n\r\n`)), expect: reject(400, /more than one space/) },
    { name: 'HTTP/2.0 in an HTTP/1 request line', why: 'only 1.0 and 1.1', bytes: (t) => bytes(rawHead(t, (u) => `GET ${u} HTTP/2.0\r\n`, `Host: ${t.host}\r\n\r\n`)), expect: reject(505) },
    { name: 'two Host fields', why: '3.2: MUST be 400', bytes: (t) => bytes(request(t, ['Host: other.example'], '', { method: 'GET' })), expect: reject(400, /more than one Host/) },
    { name: 'no Host in HTTP/1.1', why: '3.2: MUST be 400', bytes: (t) => bytes(rawHead(t, (u) => `GET ${u} HTTP/1.1\r\n`, '\r\n')), expect: reject(400, /without a Host/) },

    // ---- body boundaries: what follows a body is a new request, exactly where the framing says ----
    {
        name: 'a request pipelined after a Content-Length body',
        why: 'two requests, each exactly as framed',
        bytes: (t) => bytes(request(t, ['Content-Length: 5'], 'hello') + smuggled(t, '/second')),
        expect: { forward: [post('hello'), get('/second')] },
    },
    {
        name: 'a request pipelined after a chunked body',
        why: 'two requests, each exactly as framed',
        bytes: (t) => bytes(request(t, [TE], HELLO_CHUNKED) + smuggled(t, '/second')),
        expect: { forward: [post('hello'), get('/second')] },
    },
    {
        name: 'a request inside a Content-Length body stays body',
        why: 'the body boundary must not move: one request, whose body is the request text',
        bytes: (t) => {
            const inner = smuggled(t, '/inner');
            return bytes(request(t, [`Content-Length: ${inner.length}`], inner));
        },
        expect: { forward: [] /* filled below */ },
    },
    {
        name: 'a request inside a chunk stays body',
        why: 'the body boundary must not move',
        bytes: (t) => {
            const inner = smuggled(t, '/inner');
            return bytes(request(t, [TE], `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`));
        },
        expect: { forward: [] /* filled below */ },
    },
    {
        name: 'a chunked body that looks finished early',
        why: '"0\\r\\n\\r\\n" inside chunk data is data',
        bytes: (t) => bytes(request(t, [TE], '7\r\n0\r\n\r\nGE\r\n0\r\n\r\n')),
        expect: { forward: [post('0\r\n\r\nGE')] },
    },
    {
        name: 'a GET with a Content-Length body',
        why: 'a body on GET is framed like any other: the next bytes are not a request',
        bytes: (t) => bytes(request(t, ['Content-Length: 5'], 'hello', { method: 'GET' }) + smuggled(t, '/second')),
        expect: { forward: [{ method: 'GET', path: '/s', body: 'hello' }, get('/second')] },
    },
    {
        name: 'a good request, then a CL.TE one',
        why: 'the first is served; the second is refused and nothing of it reaches the origin',
        bytes: (t) => bytes(request(t, ['Content-Length: 5'], 'hello') + request(t, ['Content-Length: 6', TE], '0\r\n\r\nG')),
        expect: { forward: [post('hello')], thenReject: 400 },
    },
    {
        name: 'a refused request with a good one behind it',
        why: 'after an error nothing more is read from the connection',
        bytes: (t) => bytes(request(t, [TE, 'Content-Length: 3'], '0\r\n\r\n') + smuggled(t, '/after-error')),
        expect: reject(400),
    },
    {
        name: 'a broken chunk after a good one',
        why: 'the head and the first chunk are fine; the request is still refused before anything is forwarded',
        bytes: (t) => bytes(request(t, [TE], '5\r\nhello\r\n0x0\r\n\r\n')),
        expect: reject(400, /chunk size/),
    },
    {
        name: 'HTTP/1.0 with Content-Length',
        why: 'valid: forwarded with its body, then the connection closes',
        bytes: (t) => bytes(request(t, ['Content-Length: 5'], 'hello', { version: 'HTTP/1.0' })),
        expect: { forward: [post('hello')] },
    },
];

// The bodies that depend on the target form are filled in per target by `corpusFor`.
const INNER_CASES = new Set(['a request inside a Content-Length body stays body', 'a request inside a chunk stays body']);

/** The corpus with the expectations that depend on the target form filled in. */
export function corpusFor(t: CorpusTarget): SmugglingCase[] {
    return SMUGGLING_CORPUS.map((c) =>
        INNER_CASES.has(c.name) ? { ...c, expect: { forward: [post(smuggled(t, '/inner'))] } } : c,
    );
}

/**
 * Runs one case on a fresh connection; throws with what went wrong. `t` should give this case's
 * requests a path prefix of their own (e.g. '/case-7'), passed as `prefix`: the origin's requests
 * are then told apart by it, so a late request from another case cannot be taken for this one's.
 */
export async function runSmugglingCase(
    ep: Endpoint,
    origin: RecordingOrigin,
    c: SmugglingCase,
    t: CorpusTarget,
    prefix = '',
): Promise<void> {
    const connsBefore = origin.connectionLog.length;
    const requestsBefore = origin.requests.length;
    const bytesBefore = origin.bytesReceived;
    const conn = await rawTcp(ep);
    try {
        await conn.write(c.bytes(t)).catch(() => undefined); // a refusal may reset a late write
        const forwarded = 'forward' in c.expect ? c.expect.forward : [];
        for (const [i, want] of forwarded.entries()) {
            const res = await conn.readResponse({ method: want.method, timeoutMs: 5000 });
            assert.equal(res.status, 200, `response ${i + 1}: ${res.status} ${res.body.toString('latin1')}`);
            assert.equal(res.body.toString('latin1'), 'ok\n', `response ${i + 1} is the origin's`);
        }
        const rejectStatus = 'reject' in c.expect ? c.expect.reject : c.expect.thenReject;
        if (rejectStatus !== undefined) {
            const res = await conn.readResponse({ timeoutMs: 5000 });
            assert.equal(res.status, rejectStatus, `got ${res.status}: ${res.body.toString('latin1')}`);
            const ps = proxyStatusParams(res.headers['proxy-status']);
            assert.equal(ps.error, 'http_request_error', `Proxy-Status: ${res.headers['proxy-status']}`);
            const detail = 'reject' in c.expect ? c.expect.detail : undefined;
            if (detail) assert.match(String(ps.details), detail, `Proxy-Status details`);
            assert.equal(res.headers.connection, 'close');
            await conn.waitForPeerClose(5000);
            assert.equal(conn.buffered, 0, `bytes after the error answer: ${JSON.stringify(conn.peek().toString('latin1'))}`);
        } else {
            // Nothing more may come: no answer to a request the client did not mean to send.
            await sleep(150);
            assert.equal(conn.buffered, 0, `an extra response: ${JSON.stringify(conn.peek().toString('latin1'))}`);
        }
        // What the origin saw: exactly the intended requests, complete, on clean connections.
        await origin.waitForRequests(requestsBefore + forwarded.length, 5000).catch(() => undefined);
        await sleep(50);
        const seen = origin.requests.slice(requestsBefore).filter((r) => r.target.startsWith(prefix));
        assert.deepEqual(
            seen.map((r) => ({ method: r.method, path: r.target.slice(prefix.length), body: r.body.toString('latin1'), complete: r.complete })),
            forwarded.map((r) => ({ ...r, complete: true })),
            'the requests the origin parsed',
        );
        for (const oc of origin.connectionLog.slice(connsBefore))
            assert.equal(oc.parseError, null, `the origin's parser refused what Turnpike sent: ${JSON.stringify(oc.raw.toString('latin1'))}`);
        if ('reject' in c.expect)
            assert.equal(origin.bytesReceived, bytesBefore, 'not one byte of a refused request may reach the origin');
    } finally {
        conn.destroy();
    }
}

