/**
 * Request smuggling and malformed framing against the forward proxy: every case of
 * smuggling-corpus.ts is sent in one write on its own connection, as absolute-form requests to a
 * recording origin, and must end exactly as its row says: refused (status, Proxy-Status, closed,
 * not one byte at the origin) or forwarded as exactly the requests and bodies intended.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { cleanup, startRecordingOrigin, startTurnpike, type RecordingOrigin, type Turnpike } from '../src/index.js';
import { assertStillServes, LOOPBACK, proxyConfig } from './common.js';
import { corpusFor, runSmugglingCase, type CorpusTarget } from './smuggling-corpus.js';

describe('request smuggling and framing: forward proxy', () => {
    let origin: RecordingOrigin;
    let tp: Turnpike;

    before(async () => {
        origin = await startRecordingOrigin();
        tp = await startTurnpike({ config: proxyConfig({ allow_destinations: LOOPBACK }) });
    });

    after(async () => {
        try {
            await assertStillServes(tp);
            await tp.stop();
            await tp.assertCleanExit();
        } finally {
            await cleanup();
        }
    });

    // The target is known only once the origin listens; the rows are the same for every target.
    const rows = corpusFor({ target: (p) => `http://127.0.0.1:0${p}`, host: '127.0.0.1:0' });
    it('has at least 30 cases with unique names', () => {
        assert.ok(rows.length >= 30, `${rows.length} cases`);
        assert.equal(new Set(rows.map((r) => r.name)).size, rows.length);
    });
    for (const [i, row] of rows.entries()) {
        it(row.name, { timeout: 30_000 }, async () => {
            // Each case's requests carry a path prefix of their own (see runSmugglingCase).
            const prefix = `/case-${i}`;
            const t: CorpusTarget = { target: (p) => origin.url(prefix + p), host: origin.address };
            await runSmugglingCase(tp.endpoint('proxy'), origin, corpusFor(t)[i]!, t, prefix);
        });
    }
});
