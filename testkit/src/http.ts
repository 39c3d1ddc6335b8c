/**
 * HTTP/1.1 message pieces the testkit parses itself (raw-socket clients see exactly what Turnpike
 * sent), and the Proxy-Status header of RFC 9209.
 */

export interface ResponseHead {
    /** "HTTP/1.1" */
    httpVersion: string;
    status: number;
    statusText: string;
    /** Lower-case names; repeated fields joined with ", ". */
    headers: Record<string, string>;
    /** Header fields in order, as sent. */
    rawHeaders: Array<[string, string]>;
    /** Bytes of the status line and header block, including the final CRLF CRLF. */
    headLength: number;
}

export interface ParsedResponse extends ResponseHead {
    body: Buffer;
    /** Bytes of the whole response (head plus body as framed on the wire). */
    length: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Parses a response head at the start of `buf`; null while the head is incomplete. Throws on garbage. */
export function parseResponseHead(buf: Buffer): ResponseHead | null {
    const end = buf.indexOf(CRLFCRLF);
    if (end < 0) return null;
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^(HTTP\/\d(?:\.\d)?) (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
    if (!m) throw new Error(`not an HTTP response status line: ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string> = {};
    const rawHeaders: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`malformed response header line: ${JSON.stringify(line)}`);
        const name = line.slice(0, colon);
        const value = line.slice(colon + 1).trim();
        rawHeaders.push([name, value]);
        const key = name.toLowerCase();
        headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
    }
    return {
        httpVersion: m[1]!,
        status: Number(m[2]),
        statusText: m[3] ?? '',
        headers,
        rawHeaders,
        headLength: end + 4,
    };
}

export interface ParseResponseOptions {
    /** The request's method: HEAD responses have no body, a 2xx to CONNECT starts a tunnel. */
    method?: string;
    /** The connection has closed: a body delimited by close is complete. */
    eof?: boolean;
}

/** Parses one complete response at the start of `buf`; null while it is incomplete. */
export function parseResponse(buf: Buffer, options: ParseResponseOptions = {}): ParsedResponse | null {
    const head = parseResponseHead(buf);
    if (!head) return null;
    const method = (options.method ?? 'GET').toUpperCase();
    const start = head.headLength;
    const noBody =
        method === 'HEAD' ||
        (head.status >= 100 && head.status < 200) ||
        head.status === 204 ||
        head.status === 304 ||
        (method === 'CONNECT' && head.status >= 200 && head.status < 300);
    if (noBody) return { ...head, body: Buffer.alloc(0), length: start };

    const te = head.headers['transfer-encoding'];
    if (te && /(?:^|,)\s*chunked\s*$/i.test(te)) {
        const chunks: Buffer[] = [];
        let pos = start;
        for (;;) {
            const eol = buf.indexOf('\r\n', pos);
            if (eol < 0) return null;
            const sizeText = buf.subarray(pos, eol).toString('latin1').split(';')[0]!.trim();
            if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size line: ${JSON.stringify(sizeText)}`);
            const size = parseInt(sizeText, 16);
            pos = eol + 2;
            if (size === 0) {
                // Trailer section: zero or more fields, then an empty line.
                if (buf.length < pos + 2) return null;
                if (buf[pos] === 13 && buf[pos + 1] === 10) return { ...head, body: Buffer.concat(chunks), length: pos + 2 };
                const trailerEnd = buf.indexOf(CRLFCRLF, pos);
                if (trailerEnd < 0) return null;
                return { ...head, body: Buffer.concat(chunks), length: trailerEnd + 4 };
            }
            if (buf.length < pos + size + 2) return null;
            chunks.push(buf.subarray(pos, pos + size));
            pos += size + 2;
        }
    }
    const cl = head.headers['content-length'];
    if (cl !== undefined) {
        const n = Number(cl);
        if (!Number.isInteger(n) || n < 0) throw new Error(`bad content-length: ${JSON.stringify(cl)}`);
        if (buf.length < start + n) return null;
        return { ...head, body: buf.subarray(start, start + n), length: start + n };
    }
    // Delimited by the connection closing.
    if (!options.eof) return null;
    return { ...head, body: buf.subarray(start), length: buf.length };
}

/** One member of a Proxy-Status field: the proxy's name and its parameters. */
export interface ProxyStatusEntry {
    proxy: string;
    /** e.g. {error: 'destination_ip_prohibited'} or {'next-hop': '127.0.0.1:8080'} */
    params: Record<string, string | number | boolean>;
}

/**
 * Parses a Proxy-Status field value (RFC 9209: a structured-field list of tokens or strings with
 * parameters), e.g. `turnpike; error=connection_refused, other; next-hop="10.0.0.1:80"`.
 * Accepts a single value, several field lines, or undefined (an empty list). Throws on syntax errors.
 */
export function parseProxyStatus(value: string | string[] | undefined): ProxyStatusEntry[] {
    if (value === undefined) return [];
    const text = Array.isArray(value) ? value.join(', ') : value;
    const p = new SfParser(text);
    const out: ProxyStatusEntry[] = [];
    p.ws();
    if (p.done()) return out;
    for (;;) {
        const item = p.bareItem();
        const params: ProxyStatusEntry['params'] = {};
        while (p.peek() === ';') {
            p.pos++;
            p.ws();
            const key = p.key();
            if (p.peek() === '=') {
                p.pos++;
                params[key] = p.bareItem();
            } else {
                params[key] = true;
            }
        }
        out.push({ proxy: String(item), params });
        p.ows();
        if (p.done()) return out;
        p.expect(',');
        p.ows();
    }
}

/** The first Proxy-Status entry's params (what a single proxy like Turnpike reports). */
export function proxyStatusParams(value: string | string[] | undefined): ProxyStatusEntry['params'] {
    return parseProxyStatus(value)[0]?.params ?? {};
}

class SfParser {
    pos = 0;
    constructor(private readonly s: string) {}
    done(): boolean {
        return this.pos >= this.s.length;
    }
    peek(): string | undefined {
        return this.s[this.pos];
    }
    ws(): void {
        while (this.s[this.pos] === ' ') this.pos++;
    }
    ows(): void {
        while (this.s[this.pos] === ' ' || this.s[this.pos] === '\t') this.pos++;
    }
    fail(what: string): never {
        throw new Error(`Proxy-Status: ${what} at ${this.pos} in ${JSON.stringify(this.s)}`);
    }
    expect(c: string): void {
        if (this.s[this.pos] !== c) this.fail(`expected '${c}'`);
        this.pos++;
    }
    key(): string {
        const m = /^[a-z*][a-z0-9_\-.*]*/.exec(this.s.slice(this.pos));
        if (!m) this.fail('expected a parameter key');
        this.pos += m[0].length;
        return m[0];
    }
    bareItem(): string | number | boolean {
        const rest = this.s.slice(this.pos);
        if (rest[0] === '"') {
            let out = '';
            let i = 1;
            for (;;) {
                const c = rest[i];
                if (c === undefined) this.fail('unterminated string');
                if (c === '\\') {
                    const n = rest[i + 1];
                    if (n !== '"' && n !== '\\') this.fail('bad escape in string');
                    out += n;
                    i += 2;
                } else if (c === '"') {
                    this.pos += i + 1;
                    return out;
                } else {
                    out += c;
                    i++;
                }
            }
        }
        if (rest[0] === '?') {
            if (rest[1] !== '0' && rest[1] !== '1') this.fail('bad boolean');
            this.pos += 2;
            return rest[1] === '1';
        }
        const num = /^-?\d+(?:\.\d+)?/.exec(rest);
        if (num) {
            this.pos += num[0].length;
            return Number(num[0]);
        }
        const tok = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*/.exec(rest);
        if (!tok) this.fail('expected a token, string, number or boolean');
        this.pos += tok[0].length;
        return tok[0];
    }
}
