/**
 * Happy Eyeballs (RFC 8305) in a network namespace the test makes: the name's preferred address
 * (IPv6, on a veth whose far end answers nothing) black-holes, so the connection is made over IPv4
 * after about egress.attempt_delay, and the hook trace names the address that won.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { canMakeNetns, cleanup, createNetns, sleep, startDnsmasq, withTurnpike } from '../src/index.js';

describe('happy eyeballs', () => {
    afterEach(cleanup);

    it('falls back to IPv4 after the attempt delay when the IPv6 address black-holes', { timeout: 60_000 }, async (t) => {
        if (!canMakeNetns()) {
            t.skip('needs root and iproute2 to make a network namespace');
            return;
        }
        const ns = createNetns('tphe');
        ns.addBlackhole6(); // fd00::dead black-holes
        // he.test has an AAAA that black-holes and an A that works, served by dnsmasq in the namespace.
        const dns = await startDnsmasq('test', ['he.test,127.0.0.1,fd00::dead,300'], { netns: ns.name });
        const originPort = 18000 + (process.pid % 1000);
        ns.spawn('python3', ['-m', 'http.server', String(originPort), '--bind', '127.0.0.1']);

        const config = {
            runtime: { workers: 1, trace_hooks: true },
            endpoints: [
                {
                    name: 'proxy',
                    type: 'http_proxy',
                    listen: ['127.0.0.1:0'],
                    allow_destinations: ['127.0.0.0/8', 'fd00::/8'],
                    egress: { attempt_delay: '300ms' },
                    dns: { servers: [dns.server], use_hosts: false },
                },
            ],
        };
        await withTurnpike({ config, netns: ns.name }, async (tp) => {
            const proxy = tp.endpoint('proxy').address;
            let out = '';
            for (let i = 0; i < 50 && !out.startsWith('200'); i++) {
                await sleep(100); // the origin in the namespace may still be starting
                try {
                    out = ns.run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{time_total}', '-x', `http://${proxy}`,
                        `http://he.test:${originPort}/`]);
                } catch {
                    out = '';
                }
            }
            const [code, secs] = out.split(' ');
            assert.equal(code, '200', `curl through the proxy: ${out}`);
            const tried = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection' });
            assert.equal(tried.upstream, `[fd00::dead]:${originPort}`, 'IPv6 is tried first');
            const won = await tp.waitForLog({ msg: 'hook', hook: 'egress.handle_connection_established' });
            assert.equal(won.upstream, `127.0.0.1:${originPort}`, 'IPv4 won');
            const waited = Number(won.ts) - Number(tried.ts);
            assert.ok(waited >= 0.28 && waited < 2, `IPv4 started after about the attempt delay (${waited}s)`);
            assert.ok(Number(secs) >= 0.28, `the request took the attempt delay (${secs}s)`);
        });
    });
});
