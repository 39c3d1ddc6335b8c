/**
 * Body hooks: the http-firewall example scanning uploads as they stream, and the http-lab app's
 * buffer, watermark, rewrite and block on request and response bodies; the buffer limit (413).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import {
    buildDir,
    cleanup,
    echoBody,
    httpRequest,
    parseProxyStatus,
    patternBytes,
    sha256,
    startHttpOrigin,
    withTurnpike,
} from '../src/index.js';

const example = (name: string) => path.join(buildDir(), 'examples', name);
const lab = () => path.join(buildDir(), 'tests', 'apps', 'http-lab');

function config(origin: number, app?: object, limits?: object) {
    return {
        runtime: { workers: 1 },
        endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }], ...(limits ? { limits } : {}) }],
        upstreams: [{ name: 'o', servers: [`127.0.0.1:${origin}`] }],
        ...(app ? { app } : {}),
    };
}

describe('body hooks', () => {
    afterEach(cleanup);

    it('http-firewall: a pattern across a chunk boundary or URL-encoded in a form is refused; clean uploads pass intact', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        const app = { patterns: ['EVILWORD', 'drop table'] };
        await withTurnpike({ binary: example('http-firewall'), config: config(origin.port, app) }, async (tp) => {
            const web = tp.endpoint('web');
            // 64 KiB + 17 per chunk on the wire: the pattern straddles the first boundary.
            const body = Buffer.concat([Buffer.alloc(65_533, 'a'), Buffer.from('EVILWORD'), Buffer.alloc(100_000, 'b')]);
            const r1 = await httpRequest(web, { path: '/upload', method: 'POST', body, chunked: true });
            assert.equal(r1.status, 403);
            assert.equal(parseProxyStatus(r1.headers['proxy-status'])[0]?.params.error, 'http_request_denied');
            const form = 'name=x&comment=please%20drop+table%20users&z=1';
            const r2 = await httpRequest(web, {
                path: '/form',
                method: 'POST',
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                body: form,
            });
            assert.equal(r2.status, 403, 'the URL-decoded form value matched');
            assert.equal(origin.requests.length, 0, 'no refused upload reached the origin complete');

            const clean = patternBytes(1 << 20);
            const ok = await httpRequest(web, { path: '/clean', method: 'POST', body: clean });
            assert.equal(ok.status, 200);
            assert.equal(ok.headers['x-firewall'], 'scanned');
            const seen = origin.requests.at(-1)!;
            assert.equal(sha256(seen.body), sha256(clean), 'the clean upload arrived intact');
        });
    });

    it('buffer, watermark and same-length rewrites of request bodies', { timeout: 60_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ binary: lab(), config: config(origin.port) }, async (tp) => {
            const web = tp.endpoint('web');
            const body = patternBytes(300_000);
            for (const mode of ['buffer', 'watermark']) {
                for (const chunked of [false, true]) {
                    const res = await httpRequest(web, { path: `/${mode}`, method: 'POST', body, chunked, headers: { 'x-body': mode } });
                    assert.equal(res.status, 200, `${mode} chunked=${chunked}: ${res.text()}`);
                    assert.equal(sha256(origin.requests.at(-1)!.body), sha256(body), `${mode} chunked=${chunked}: intact`);
                }
            }
            const up = await httpRequest(web, { path: '/u', method: 'POST', body: 'hello body', headers: { 'x-body': 'upper' } });
            assert.equal(up.status, 200);
            assert.equal(origin.requests.at(-1)!.body.toString(), 'HELLO BODY');
            assert.equal(origin.requests.at(-1)!.headers['content-length'], '10', 'same length: Content-Length kept');
            const grow = await httpRequest(web, { path: '/g', method: 'POST', body: 'abc', headers: { 'x-body': 'grow' } });
            assert.equal(grow.status, 200);
            assert.equal(origin.requests.at(-1)!.body.toString(), 'ABC!');
            assert.equal(origin.requests.at(-1)!.headers['transfer-encoding'], 'chunked', 'a length change goes chunked');
            const before = origin.requests.length;
            const blocked = await httpRequest(web, { path: '/b', method: 'POST', body: 'x'.repeat(5000), headers: { 'x-body': 'block' } });
            assert.equal(blocked.status, 422);
            assert.equal(origin.requests.length, before, 'a body held whole and refused never reached the origin');
        });
    });

    it('a held body past limits.max_body_buffer gets 413', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        await withTurnpike({ binary: lab(), config: config(origin.port, undefined, { max_body_buffer: '8KiB' }) }, async (tp) => {
            const res = await httpRequest(tp.endpoint('web'), { path: '/big', method: 'POST', body: 'y'.repeat(20_000), headers: { 'x-body': 'buffer' } });
            assert.equal(res.status, 413);
            assert.match(String(res.headers['proxy-status']), /max_body_buffer/);
            assert.equal(origin.requests.length, 0);
        });
    });

    it('response bodies: rewrite, append (goes chunked) and watermark', { timeout: 60_000 }, async () => {
        const big = patternBytes(500_000);
        const origin = await startHttpOrigin((req, res) => {
            const data = req.url === '/big' ? big : Buffer.from('origin says hi');
            res.writeHead(200, { 'content-type': 'text/plain', 'content-length': data.length });
            res.end(data);
        });
        await withTurnpike({ binary: lab(), config: config(origin.port) }, async (tp) => {
            const web = tp.endpoint('web');
            const up = await httpRequest(web, { path: '/x', headers: { 'x-resp': 'upper' } });
            assert.equal(up.text(), 'ORIGIN SAYS HI');
            assert.equal(up.headers['content-length'], '14');
            const app = await httpRequest(web, { path: '/x', headers: { 'x-resp': 'append' } });
            assert.equal(app.text(), 'origin says hi[lab]');
            assert.equal(app.headers['transfer-encoding'], 'chunked');
            const wm = await httpRequest(web, { path: '/big', headers: { 'x-resp': 'watermark' } });
            assert.equal(wm.status, 200);
            assert.equal(sha256(wm.body), sha256(big), 'held and resumed chunk by chunk, intact');
        });
    });

    it('echoes a chunked upload through an untouched body hook', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin(echoBody);
        await withTurnpike({ binary: lab(), config: config(origin.port) }, async (tp) => {
            const body = patternBytes(200_000);
            const res = await httpRequest(tp.endpoint('web'), { path: '/echo', method: 'POST', body, chunked: true });
            assert.equal(res.status, 200);
            assert.equal(sha256(res.body), sha256(body));
        });
    });

    it('Expect: 100-continue: Turnpike answers the 100 itself while a body hook holds the head (curl, no 1 s wait)', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        const app = { patterns: ['EVILWORD'] };
        await withTurnpike({ binary: example('http-firewall'), config: config(origin.port, app) }, async (tp) => {
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-expect-'));
            const file = path.join(dir, 'body');
            const body = patternBytes(2 << 20);
            fs.writeFileSync(file, body);
            // Asynchronously: the origin runs in this process.
            const { stdout: out } = await promisify(execFile)('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', '-H', 'Expect: 100-continue',
                '--expect100-timeout', '10', '--data-binary', `@${file}`, `http://${tp.endpoint('web').address}/up`]);
            fs.rmSync(dir, { recursive: true, force: true });
            const [code, secs] = out.split(' ');
            assert.equal(code, '200', out);
            assert.ok(Number(secs) < 5, `curl did not wait out its 10 s expect timeout (${secs} s)`);
            assert.equal(sha256(origin.requests.at(-1)!.body), sha256(body));
            assert.equal(origin.requests.at(-1)!.headers.expect, undefined, 'the expectation was met here, not passed on');
        });
    });
});
