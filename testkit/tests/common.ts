/** Config builders and checks shared by Turnpike's own integration tests. */
import assert from 'node:assert/strict';

import { proxyRequest, startHttpOrigin, type HttpOrigin, type Turnpike } from '../src/index.js';

/** The loopback range, for allow_destinations (loopback is refused by default). */
export const LOOPBACK = ['127.0.0.0/8'];

/** The hooks a CONNECT tunnel to an IP literal passes, in order. */
export const CONNECT_ORDER = [
    'ingress.handle_connection',
    'http.handle_proxy_connect_request',
    'egress.handle_connection',
    'egress.handle_connection_established',
    'http.handle_proxy_connect_response',
    'ingress.handle_connection_close',
];

type Obj = Record<string, unknown>;

/**
 * One http_proxy endpoint called 'proxy' on 127.0.0.1:0, one worker, hook tracing on.
 * `endpoint` adds or overrides endpoint keys; `root` adds root sections (`runtime` keys merge).
 */
export function proxyConfig(endpoint: Obj = {}, root: Obj = {}): Obj {
    const { runtime, ...rest } = root;
    return {
        runtime: { workers: 1, log_level: 'info', trace_hooks: true, ...(runtime as Obj | undefined) },
        endpoints: [{ name: 'proxy', type: 'http_proxy', listen: ['127.0.0.1:0'], ...endpoint }],
        ...rest,
    };
}

/** One tcp endpoint called 'l4' on 127.0.0.1:0 forwarding to `upstream`, loopback allowed. */
export function tcpConfig(upstream: string, endpoint: Obj = {}, root: Obj = {}): Obj {
    const { runtime, ...rest } = root;
    return {
        runtime: { workers: 1, log_level: 'info', trace_hooks: true, ...(runtime as Obj | undefined) },
        endpoints: [
            { name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream, allow_destinations: LOOPBACK, ...endpoint },
        ],
        ...rest,
    };
}

/** Asserts Turnpike is alive and still forwards a plain GET (to `origin`, or a fresh echo origin). */
export async function assertStillServes(tp: Turnpike, origin?: HttpOrigin, endpoint = 'proxy'): Promise<void> {
    assert.ok(tp.running, `Turnpike is not running any more:\n${tp.stderrTail(30)}`);
    const o = origin ?? (await startHttpOrigin());
    const before = o.requests.length;
    const res = await proxyRequest(tp.endpoint(endpoint), { url: o.url('/still-serving'), timeoutMs: 10_000 });
    assert.equal(res.status, 200, `a good request after the bad input got ${res.status}: ${res.text()}`);
    assert.equal(o.requests.length, before + 1);
    assert.equal(o.requests[before]!.url, '/still-serving');
}
