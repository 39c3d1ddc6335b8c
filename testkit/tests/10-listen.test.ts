/** Listening: a port another process listens on is refused, even though workers use SO_REUSEPORT. */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { cleanup, runTurnpike, withTurnpike, writeConfigFile } from '../src/index.js';
import { assertStillServes, LOOPBACK, proxyConfig } from './common.js';

describe('listen addresses', () => {
    afterEach(cleanup);

    it('a second Turnpike on the same port exits 1 with a clear error instead of sharing it', { timeout: 30_000 }, async () => {
        await withTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }, { runtime: { workers: 2 } }) }, async (tp) => {
            const taken = tp.endpoint('proxy').address;
            const file = writeConfigFile(proxyConfig({ listen: [taken] }));
            const second = await runTurnpike(['-c', file], { timeoutMs: 10_000 });
            assert.equal(second.code, 1, second.stderr);
            assert.match(second.stderr, /cannot listen on 127\.0\.0\.1:\d+ for endpoint 'proxy': Address already in use/);
            // The first one still owns the port and serves.
            await assertStillServes(tp);
        });
    });

    it('logs ready, draining and stopped whatever log_level says', { timeout: 30_000 }, async () => {
        await withTurnpike({ config: proxyConfig({}, { runtime: { log_level: 'error', trace_hooks: false } }) }, async (tp) => {
            assert.ok(tp.findLog({ msg: 'ready' }), 'ready at log_level error');
            tp.signal('SIGTERM');
            await tp.waitForLog({ msg: 'stopped' }, 10_000);
            assert.ok(tp.findLog({ msg: 'draining' }));
            assert.equal((await tp.exited).code, 0);
        });
    });
});
