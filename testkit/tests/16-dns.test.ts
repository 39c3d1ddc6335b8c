/**
 * Upstream name resolution through a real DNS server the test starts (dnsmasq on a loopback
 * port): the cache honours TTLs (no second query, per dnsmasq's own log), NXDOMAIN is cached and
 * answered 502 dns_error with its rcode, a dead first server falls back to the next, no server at
 * all is 504 dns_timeout, and a name that rebinds to loopback is refused by the default policy.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { afterEach, describe, it } from 'node:test';

import path from 'node:path';

import { buildDir, cleanup, parseProxyStatus, proxyRequest, startDnsmasq, startHttpOrigin, track, withTurnpike } from '../src/index.js';

function config(servers: string[], extra: Record<string, unknown> = {}, dns: Record<string, unknown> = {}) {
    return {
        runtime: { workers: 1 },
        endpoints: [
            { name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], dns: { servers, use_hosts: false, timeout: '200ms', attempts: 1, ...dns }, ...extra },
        ],
    };
}

/** A UDP socket that takes DNS queries and never answers (a dead server). */
async function deadServer(): Promise<string> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    track('dead dns server', () => s.close());
    return `127.0.0.1:${s.address().port}`;
}

describe('DNS through the proxy', () => {
    afterEach(cleanup);

    it('caches an answer for its TTL: the second request sends no query', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        const ns = await startDnsmasq('test', ['web.test,127.0.0.1,300']);
        await withTurnpike({ config: config([ns.server], { allow_destinations: ['127.0.0.0/8'] }) }, async (tp) => {
            for (let i = 0; i < 2; i++) {
                const res = await proxyRequest(tp.endpoint('proxy'), { url: `http://web.test:${origin.port}/r${i}` });
                assert.equal(res.status, 200, res.text());
            }
            assert.equal(origin.requests.length, 2);
            assert.equal(ns.queries('web.test'), 2, 'one A and one AAAA query for both requests');
        });
    });

    it('NXDOMAIN: 502 dns_error with rcode, and the negative answer is cached', { timeout: 30_000 }, async () => {
        const ns = await startDnsmasq('test', ['web.test,127.0.0.1,300']);
        await withTurnpike({ config: config([ns.server]) }, async (tp) => {
            for (let i = 0; i < 2; i++) {
                const res = await proxyRequest(tp.endpoint('proxy'), { url: 'http://missing.test/' });
                assert.equal(res.status, 502);
                const ps = parseProxyStatus(res.headers['proxy-status'])[0]!;
                assert.equal(ps.params.error, 'dns_error', String(res.headers['proxy-status']));
                assert.equal(ps.params.rcode, 'NXDOMAIN', String(res.headers['proxy-status']));
            }
            assert.equal(ns.queries('missing.test'), 2, 'the second request was answered from the negative cache');
        });
    });

    it('falls back to the next server when the first does not answer', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        const ns = await startDnsmasq('test', ['web.test,127.0.0.1,300']);
        const dead = await deadServer();
        await withTurnpike({ config: config([dead, ns.server], { allow_destinations: ['127.0.0.0/8'] }) }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), { url: `http://web.test:${origin.port}/` });
            assert.equal(res.status, 200, res.text());
            assert.ok(ns.queries('web.test') >= 1);
        });
    });

    it('no server answers: 504 dns_timeout', { timeout: 30_000 }, async () => {
        const dead = await deadServer();
        await withTurnpike({ config: config([dead]) }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), { url: 'http://web.test/' });
            assert.equal(res.status, 504);
            assert.equal(parseProxyStatus(res.headers['proxy-status'])[0]?.params.error, 'dns_timeout');
        });
    });

    it('a name that resolves to loopback (DNS rebinding) is refused by the default policy', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        const ns = await startDnsmasq('test', ['rebind.test,127.0.0.1,300']);
        await withTurnpike({ config: config([ns.server]) }, async (tp) => {
            const res = await proxyRequest(tp.endpoint('proxy'), { url: `http://rebind.test:${origin.port}/` });
            assert.equal(res.status, 403);
            assert.equal(parseProxyStatus(res.headers['proxy-status'])[0]?.params.error, 'destination_ip_prohibited');
            assert.equal(origin.requests.length, 0, 'the origin never saw it');
        });
    });

    it('an app extension on cached DNS answers lives as long as the answer (TP_EXT_DNS_ITEM)', { timeout: 30_000 }, async () => {
        const origin = await startHttpOrigin();
        const ns = await startDnsmasq('test', ['web.test,127.0.0.1,300']);
        const cfg = config([ns.server], { allow_destinations: ['127.0.0.0/8'] }) as { endpoints: object[]; app?: object };
        cfg.app = { banner: 'dns' };
        await withTurnpike({ binary: path.join(buildDir(), 'tests', 'apps', 'hook-lab'), config: cfg }, async (tp) => {
            for (let i = 1; i <= 3; i++) {
                const res = await proxyRequest(tp.endpoint('proxy'), { url: `http://web.test:${origin.port}/${i}` });
                assert.equal(res.status, 200);
                await tp.waitForLog({ msg: 'app', event: 'dns_item', host: 'web.test', uses: i });
            }
            assert.equal(ns.queries('web.test'), 2, 'one cached answer served all three');
        });
    });
});
