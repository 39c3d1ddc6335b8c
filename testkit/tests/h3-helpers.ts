/**
 * Helpers of the QUIC/HTTP/3 tests: finding Debian's interop peers, h3-files as a server, the
 * pattern's SHA-256, and the quic-go client (tests/interop/h3-quicgo) built offline in GOPATH
 * mode from Debian's Go packages.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

import {
    appBinary,
    buildDir,
    PATTERN_PERIOD,
    patternBytes,
    REPO_ROOT,
    sleep,
    startProcess,
    track,
    type TestCerts,
    type TestProcess,
} from '../src/index.js';

export const MiB = 1024 * 1024;
export const H3_FILES = appBinary('h3-files');

/** A binary on PATH or in the usual Debian directories (gtlsserver lives in /usr/sbin). */
export function findBinary(name: string): string | null {
    const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/sbin', '/usr/local/bin'];
    for (const d of dirs) {
        const p = path.join(d, name);
        try {
            fs.accessSync(p, fs.constants.X_OK);
            return p;
        } catch {
            /* not here */
        }
    }
    return null;
}

/** findBinary(), or skips the test naming the package that has it. */
export function needBinary(t: TestContext, name: string, pkg: string): string | null {
    const p = findBinary(name);
    if (!p) t.skip(`${name} is not installed (Debian package ${pkg} from bookworm-backports: scripts/install-deps interop)`);
    return p;
}

/** A temp dir removed by cleanup(). */
export function tempDir(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`dir ${dir}`, remove, remove);
    return dir;
}

/** SHA-256 of `length` bytes of the pattern (byte i is i % 251). */
export function patternSha256(length: number): string {
    const slice = PATTERN_PERIOD * 4096;
    const ref = patternBytes(slice);
    const h = crypto.createHash('sha256');
    for (let off = 0; off < length; off += slice) h.update(ref.subarray(0, Math.min(slice, length - off)));
    return h.digest('hex');
}

export function fileSha256(file: string): string {
    const h = crypto.createHash('sha256');
    const fd = fs.openSync(file, 'r');
    const buf = Buffer.allocUnsafe(4 * MiB);
    try {
        for (;;) {
            const n = fs.readSync(fd, buf, 0, buf.length, null);
            if (n === 0) break;
            h.update(buf.subarray(0, n));
        }
    } finally {
        fs.closeSync(fd);
    }
    return h.digest('hex');
}

/** Starts h3-files on `listen` (default 127.0.0.1:0) and waits for its ready line. */
export async function startH3Files(certs: TestCerts, extra: string[] = [], listen = '127.0.0.1:0'): Promise<{ srv: TestProcess; port: number }> {
    const srv = startProcess(H3_FILES, ['--listen', listen, '--cert', certs.certFile, '--key', certs.keyFile, ...extra]);
    const ready = await srv.waitForJson((l) => l.msg === 'ready', 20_000);
    return { srv, port: ready.port as number };
}

/** Stops h3-files, checks a clean exit, and returns its last stats line. */
export async function stopH3Files(srv: TestProcess): Promise<Record<string, unknown>> {
    await srv.stop();
    await srv.assertCleanExit();
    const last = srv.jsonLines().filter((l) => l.msg === 'stats').pop();
    assert.ok(last, `no stats line\n${srv.tail()}`);
    return last;
}

export async function freeUdpPort(): Promise<number> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    const port = s.address().port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
}

const GO = '/usr/lib/go-1.23/bin/go';
const GOCODE = '/usr/share/gocode';
const QUICGO_SRC = path.join(REPO_ROOT, 'tests', 'interop', 'h3-quicgo', 'main.go');

/**
 * The quic-go HTTP/3 client, built on first use into $TURNPIKE_BUILD/interop/h3-quicgo (again
 * when main.go is newer). Offline: GOPATH mode over Debian's packaged sources, no module proxy,
 * no toolchain download. Skips the test when Go 1.23 or quic-go is not installed
 * (scripts/install-deps interop).
 */
export function quicGoClient(t: TestContext): string | null {
    if (!fs.existsSync(GO) || !fs.existsSync(path.join(GOCODE, 'src/github.com/quic-go/quic-go/http3'))) {
        t.skip('Go 1.23 or quic-go is not installed (golang-1.23-go, golang-github-lucas-clemente-quic-go-dev from bookworm-backports: scripts/install-deps interop)');
        return null;
    }
    const out = path.join(buildDir(), 'interop', 'h3-quicgo');
    const fresh = fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(QUICGO_SRC).mtimeMs;
    if (!fresh) {
        const env = {
            PATH: `${path.dirname(GO)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
            HOME: process.env.HOME ?? '/tmp',
            GO111MODULE: 'off',
            GOPATH: `${path.join(buildDir(), 'interop', 'gopath')}:${GOCODE}`,
            GOCACHE: path.join(buildDir(), 'interop', 'go-cache'),
            GOPROXY: 'off',
            GOFLAGS: '',
            GOTOOLCHAIN: 'local',
            CGO_ENABLED: '0',
        };
        execFileSync(GO, ['build', '-o', out, QUICGO_SRC], { env, stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
    }
    return out;
}

/**
 * ngtcp2's gtlsserver serving one file of `size` random bytes as /blob.bin on a free port of
 * 127.0.0.1 (it takes a fixed port and prints nothing when ready with -q: it is given half a
 * second and must still be running). Returns the process, the port and the file's SHA-256.
 */
export async function startGtlsServer(gtlsserver: string, certs: TestCerts, size: number): Promise<{ srv: TestProcess; port: number; sha256: string }> {
    const htdocs = tempDir('tp-gtls-htdocs-');
    const blob = crypto.randomBytes(size);
    fs.writeFileSync(path.join(htdocs, 'blob.bin'), blob);
    const sha256 = crypto.createHash('sha256').update(blob).digest('hex');
    const port = await freeUdpPort();
    const srv = startProcess(gtlsserver, ['-q', '--no-quic-dump', '--no-http-dump', '-d', htdocs, '127.0.0.1', String(port), certs.keyFile, certs.certFile]);
    const early = await Promise.race([srv.exited.then(() => 'exited'), sleep(500).then(() => 'running')]);
    assert.equal(early, 'running', `gtlsserver exited\n${srv.tail()}`);
    return { srv, port, sha256 };
}
