/**
 * The same request smuggling and framing corpus as 17-smuggling, against the http on-ramp (the
 * reverse proxy): origin-form targets, the recording origin as the route's only server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { cleanup, startRecordingOrigin, startTurnpike, type RecordingOrigin, type Turnpike } from '../src/index.js';
import { corpusFor, runSmugglingCase, type CorpusTarget } from './smuggling-corpus.js';

describe('request smuggling and framing: reverse proxy', () => {
    let origin: RecordingOrigin;
    let tp: Turnpike;

    before(async () => {
        origin = await startRecordingOrigin();
        tp = await startTurnpike({
            config: {
                runtime: { workers: 1 },
                endpoints: [{ name: 'web', type: 'http', listen: ['127.0.0.1:0'], routes: [{ upstream: 'o' }] }],
                upstreams: [{ name: 'o', servers: [origin.address], retries: 0 }],
            },
        });
    });

    after(async () => {
        try {
            await tp.stop();
            await tp.assertCleanExit();
        } finally {
            await cleanup();
        }
    });

    const rows = corpusFor({ target: (p) => p, host: 'app.test' });
    it('has at least 30 cases', () => assert.ok(rows.length >= 30, `${rows.length} cases`));
    for (const [i, row] of rows.entries()) {
        it(row.name, { timeout: 30_000 }, async () => {
            const prefix = `/case-${i}`;
            const t: CorpusTarget = { target: (p) => prefix + p, host: 'app.test' };
            await runSmugglingCase(tp.endpoint('web'), origin, corpusFor(t)[i]!, t, prefix);
        });
    }
});
