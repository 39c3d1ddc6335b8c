/**
 * Happy Eyeballs' resolution delay (RFC 8305 section 3): connecting does not wait for both the A and
 * the AAAA answer. A scripted DNS server answers one type late or never; the hook trace shows which
 * address was tried first and which won.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { cleanup, proxyRequest, startHttpOrigin, startScriptedDns, withTurnpike, type ScriptedName } from '../src/index.js';

function config(server: string, resolutionDelay: string) {
    return {
        runtime: { workers: 1, trace_hooks: true },
        endpoints: [
            {
                name: 'proxy',
                type: 'http_proxy',
                listen: ['127.0.0.1:0'],
                allow_destinations: ['127.0.0.0/8', '::1/128'],
                // A lost answer would hold a set-up that waits for both for 2 s + 4 s.
                dns: { servers: [server], use_hosts: false, timeout: '2s', attempts: 2 },
                egress: { resolution_delay: resolutionDelay, attempt_delay: '250ms' },
            },
        ],
    };
}

async function timedGet(tp: Parameters<Parameters<typeof withTurnpike>[1]>[0], url: string) {
    const t0 = Date.now();
    const res = await proxyRequest(tp.endpoint('proxy'), { url });
    return { res, ms: Date.now() - t0 };
}

describe('resolution delay (RFC 8305 3)', () => {
    afterEach(cleanup);

    const names: Record<string, ScriptedName> = {
        'v4-only-answers.test': { A: ['127.0.0.1'], AAAA: ['::1'], delayAAAA: null },
        'v6-first.test': { A: ['127.0.0.1'], AAAA: ['::1'], delayA: null },
        'aaaa-in-time.test': { A: ['127.0.0.1'], AAAA: ['::1'], delayAAAA: 100 },
        'aaaa-too-late.test': { A: ['127.0.0.1'], AAAA: ['::1'], delayAAAA: 1500 },
        'late-v6-saves.test': { A: ['127.0.0.2'], AAAA: ['::1'], delayAAAA: 600 },
    };

    it('an A answer goes on alone after the delay when the AAAA answer never comes', { timeout: 30_000 }, async () => {
        const dns = await startScriptedDns(names);
        const origin = await startHttpOrigin();
        await withTurnpike({ config: config(dns.server, '50ms') }, async (tp) => {
            const { res, ms } = await timedGet(tp, `http://v4-only-answers.test:${origin.port}/`);
            assert.equal(res.status, 200, res.text());
            // Waiting for both answers would take the AAAA question's whole retry budget (6 s).
            assert.ok(ms < 1500, `connected without waiting for the AAAA answer (${ms} ms)`);
            const won = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(won.upstream, `127.0.0.1:${origin.port}`);
            assert.ok(dns.questions.includes('AAAA v4-only-answers.test'), 'the AAAA question was asked');
        });
    });

    it('an AAAA answer that comes first is used at once', { timeout: 30_000 }, async () => {
        const dns = await startScriptedDns(names);
        const origin = await startHttpOrigin(undefined, { host: '::1' });
        await withTurnpike({ config: config(dns.server, '1s') }, async (tp) => {
            const { res, ms } = await timedGet(tp, `http://v6-first.test:${origin.port}/`);
            assert.equal(res.status, 200, res.text());
            assert.ok(ms < 900, `no resolution delay for IPv6 (${ms} ms, the delay is 1 s)`);
            const won = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(won.upstream, `[::1]:${origin.port}`);
        });
    });

    it('an AAAA answer within the delay is preferred', { timeout: 30_000 }, async () => {
        const dns = await startScriptedDns(names);
        const origin = await startHttpOrigin(undefined, { host: '::1' });
        await withTurnpike({ config: config(dns.server, '400ms') }, async (tp) => {
            const { res } = await timedGet(tp, `http://aaaa-in-time.test:${origin.port}/`);
            assert.equal(res.status, 200, res.text());
            const tried = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection' });
            assert.equal(tried.upstream, `[::1]:${origin.port}`, 'IPv6 first: the AAAA answer came within the delay');
            const won = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(won.upstream, `[::1]:${origin.port}`);
        });
    });

    it('an AAAA answer after the delay does not hold up IPv4', { timeout: 30_000 }, async () => {
        const dns = await startScriptedDns(names);
        const origin = await startHttpOrigin();
        await withTurnpike({ config: config(dns.server, '100ms') }, async (tp) => {
            const { res, ms } = await timedGet(tp, `http://aaaa-too-late.test:${origin.port}/`);
            assert.equal(res.status, 200, res.text());
            assert.ok(ms < 1200, `IPv4 went ahead before the AAAA answer (${ms} ms; it comes at 1.5 s)`);
            const tried = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection' });
            assert.equal(tried.upstream, `127.0.0.1:${origin.port}`);
        });
    });

    it('addresses of a late family join the attempts when the early ones failed', { timeout: 30_000 }, async () => {
        const dns = await startScriptedDns(names);
        const origin = await startHttpOrigin(undefined, { host: '::1' }); // nothing on 127.0.0.2
        await withTurnpike({ config: config(dns.server, '50ms') }, async (tp) => {
            const { res, ms } = await timedGet(tp, `http://late-v6-saves.test:${origin.port}/`);
            assert.equal(res.status, 200, res.text());
            assert.ok(ms >= 500, `it waited for the AAAA answer (${ms} ms)`);
            const tried = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection' });
            assert.equal(tried.upstream, `127.0.0.2:${origin.port}`, 'the A answer went first');
            const won = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(won.upstream, `[::1]:${origin.port}`, 'the late IPv6 address won');
            const ips = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_upstream_ips' });
            assert.ok(ips, 'handle_upstream_ips saw the first family');
            const hooks = tp.logsWithMsg('hook').map((l) => String(l.hook));
            assert.equal(hooks.filter((h) => h === 'egress.handle_upstream_ips').length, 2,
                `handle_upstream_ips ran for each family: ${hooks.join(' ')}`);
        });
    });
});
