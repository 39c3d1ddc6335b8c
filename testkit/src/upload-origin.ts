/**
 * An HTTP/1.1 origin for uploads: it hashes every request body as it streams (SHA-256, byte count,
 * and a check against the testkit's pattern) without keeping it, so uploads of any size can be
 * byte-checked; and it can read slowly (a pause before the first byte, a delay after each chunk)
 * to push back on whoever sends.
 */
import http from 'node:http';

import { extend, listenTracked } from './listen.js';
import type { ServerBase } from './origins.js';
import { PatternVerifier, StreamHash } from './pattern.js';
import { waitFor } from './wait.js';

/** One request body as the origin received it. */
export interface UploadRecord {
    method: string;
    /** The request target as received (origin form). */
    url: string;
    headers: http.IncomingHttpHeaders;
    /** Body bytes received (de-chunked). */
    bytes: number;
    /** SHA-256 (hex) of the body; set once it is complete. */
    sha256: string;
    /** Whether every byte matched the pattern (byte i is i % 251) so far. */
    patternOk: boolean;
    /** The first byte off the pattern, or null. */
    patternMismatchAt: number | null;
    /** True once the whole body arrived (the message ended). */
    complete: boolean;
    /** True when the connection went away before the body's end. */
    aborted: boolean;
}

export interface UploadOriginOptions {
    /** Listen address (default 127.0.0.1). */
    host?: string;
    /** Wait this long after a request head before reading its body (default 0). */
    pauseMs?: number;
    /** Stop reading for this long after every chunk (default 0): a slow reader. */
    chunkDelayMs?: number;
}

export interface UploadOrigin extends ServerBase {
    /** 'http://HOST:PORT' + path. */
    url(path?: string): string;
    /** Every request so far, in the order their heads arrived. */
    readonly uploads: readonly UploadRecord[];
    /** Body bytes received so far, over all requests. */
    readonly bytesReceived: number;
    /** Waits until at least `n` uploads are complete (default 10 s). */
    waitForUploads(n: number, timeoutMs?: number): Promise<UploadRecord[]>;
}

/**
 * Starts the upload origin on a free port. Each request is answered once its body is complete:
 * 200 with a JSON body {bytes, sha256, patternOk}.
 */
export async function startUploadOrigin(options: UploadOriginOptions = {}): Promise<UploadOrigin> {
    const host = options.host ?? '127.0.0.1';
    const uploads: UploadRecord[] = [];
    let total = 0;

    const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
        const rec: UploadRecord = {
            method: req.method ?? '',
            url: req.url ?? '',
            headers: req.headers,
            bytes: 0,
            sha256: '',
            patternOk: true,
            patternMismatchAt: null,
            complete: false,
            aborted: false,
        };
        uploads.push(rec);
        const hash = new StreamHash();
        const verifier = new PatternVerifier();
        req.pause();
        const onData = (d: Buffer) => {
            hash.update(d);
            verifier.update(d);
            rec.bytes += d.length;
            total += d.length;
            rec.patternOk = verifier.ok;
            rec.patternMismatchAt = verifier.mismatchAt;
            if (options.chunkDelayMs) {
                req.pause();
                setTimeout(() => req.resume(), options.chunkDelayMs);
            }
        };
        req.on('data', onData);
        req.on('end', () => {
            rec.complete = true;
            rec.sha256 = hash.digest();
            const body = JSON.stringify({ bytes: rec.bytes, sha256: rec.sha256, patternOk: rec.patternOk });
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
            res.end(body);
        });
        req.on('close', () => {
            if (!rec.complete) rec.aborted = true;
        });
        setTimeout(() => req.resume(), options.pauseMs ?? 0);
    });
    const base = await listenTracked(server, host, 'upload origin');
    const { address } = base;
    return extend(base, {
        url: (p = '/') => `http://${address}${p.startsWith('/') ? p : '/' + p}`,
        uploads,
        get bytesReceived() {
            return total;
        },
        async waitForUploads(n: number, timeoutMs = 10_000) {
            await waitFor(() => uploads.filter((u) => u.complete).length >= n, {
                timeoutMs,
                message: () =>
                    `upload origin ${address} has ${uploads.filter((u) => u.complete).length} complete uploads, expected ${n}`,
            });
            return uploads.filter((u) => u.complete);
        },
    });
}
