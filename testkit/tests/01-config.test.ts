/** The CLI and config validation: --version, --print-default-config, --check-config errors. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';

import { checkConfig, cleanup, REPO_ROOT, runTurnpike, writeConfigFile } from '../src/index.js';
import { LOOPBACK, proxyConfig } from './common.js';

describe('config and CLI', () => {
    afterEach(cleanup);

    it('--version prints the version', { timeout: 60_000 }, async () => {
        const r = await runTurnpike(['--version']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), 'turnpike 0.1.0');
    });

    it('--print-default-config prints a complete config that --check-config accepts', { timeout: 60_000 }, async () => {
        const printed = await runTurnpike(['--print-default-config']);
        assert.equal(printed.code, 0, printed.stderr);
        for (const key of ['runtime:', 'workers', 'drain_timeout', 'log_level', 'trace_hooks', 'endpoints']) {
            assert.ok(printed.stdout.includes(key), `default config lacks '${key}':\n${printed.stdout}`);
        }
        const file = writeConfigFile(printed.stdout, 'default.yaml');
        assert.equal(fs.readFileSync(file, 'utf8'), printed.stdout);
        const checked = await runTurnpike(['--check-config', '-c', file]);
        assert.equal(checked.code, 0, `the printed default config does not check:\n${checked.stderr}\n---\n${printed.stdout}`);
    });

    it('--check-config accepts the configs the tests use', { timeout: 60_000 }, async () => {
        const r = await checkConfig(
            proxyConfig(
                {
                    allow_destinations: LOOPBACK,
                    timeouts: { connect: '10s', idle: '60s', header_read: '500ms' },
                    limits: { max_header_bytes: '16KiB', max_headers: 100 },
                },
                { runtime: { drain_timeout: '1s' } },
            ),
        );
        assert.equal(r.code, 0, r.stderr);
        const tcp = await checkConfig({
            endpoints: [{ name: 'l4', type: 'tcp', listen: ['127.0.0.1:0'], upstream: '127.0.0.1:9', allow_destinations: LOOPBACK }],
        });
        assert.equal(tcp.code, 0, tcp.stderr);
    });

    it('--check-config accepts every sample config in examples/configs', { timeout: 60_000 }, async () => {
        const dir = path.join(REPO_ROOT, 'examples', 'configs');
        const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'));
        assert.ok(files.length >= 5, files.join(' '));
        for (const f of files) {
            const r = await runTurnpike(['--check-config', '-c', path.join(dir, f)]);
            assert.equal(r.code, 0, `${f}: ${r.stderr}`);
        }
    });

    it('a misspelt key exits 2 and the error names file, line, column and key', { timeout: 60_000 }, async () => {
        const yaml = [
            'runtime:', //               1
            '  workers: 1', //           2
            'endpoints:', //             3
            '  - name: proxy', //        4
            '    type: http_proxy', //   5
            '    lisen: [127.0.0.1:0]', // 6: 'lisen' starts in column 5
            '',
        ].join('\n');
        const r = await checkConfig(yaml);
        assert.equal(r.code, 2, `exit ${r.code}; stderr:\n${r.stderr}`);
        assert.ok(
            r.stderr.includes(`${r.path}:6:5: endpoints[0].lisen: unknown key 'lisen'`),
            `stderr should say "${r.path}:6:5: endpoints[0].lisen: unknown key 'lisen' ...":\n${r.stderr}`,
        );
        assert.match(r.stderr, /did you mean 'listen'\?/);
    });

    it('a misspelt key in a nested section is found too', { timeout: 60_000 }, async () => {
        const yaml = [
            'endpoints:', //                    1
            '  - name: proxy', //               2
            '    type: http_proxy', //          3
            '    listen: [127.0.0.1:0]', //     4
            '    timeouts:', //                 5
            '      header_raed: 5s', //         6
            '',
        ].join('\n');
        const r = await checkConfig(yaml);
        assert.equal(r.code, 2, r.stderr);
        assert.ok(r.stderr.includes(`${r.path}:6:7: endpoints[0].timeouts.header_raed: unknown key 'header_raed'`), r.stderr);
        assert.match(r.stderr, /did you mean 'header_read'\?/);
    });

    it('out-of-range values exit 2 and name file, line and key', { timeout: 60_000 }, async () => {
        const cases: Array<{ yaml: string; line: number; key: string }> = [
            { yaml: 'runtime:\n  workers: 100000\n', line: 2, key: 'runtime.workers' },
            {
                yaml: 'endpoints:\n  - name: p\n    type: http_proxy\n    listen: [127.0.0.1:0]\n    limits: {max_headers: 0}\n',
                line: 5,
                key: 'endpoints[0].limits.max_headers',
            },
            { yaml: 'runtime:\n  drain_timeout: 2h\n', line: 2, key: 'runtime.drain_timeout' },
            {
                yaml: 'endpoints:\n  - name: q\n    type: http3\n    listen: [127.0.0.1:0]\n    quic: {certificate: c.pem, private_key: k.pem, max_udp_payload: 1000}\n',
                line: 5,
                key: 'endpoints[0].quic.max_udp_payload',
            },
            {
                yaml: 'endpoints:\n  - name: q\n    type: http3\n    listen: [127.0.0.1:0]\n    quic: {certificate: c.pem, private_key: k.pem,\n           retry: under_load, retry_threshold: -1}\n',
                line: 6,
                key: 'endpoints[0].quic.retry_threshold',
            },
        ];
        for (const c of cases) {
            const r = await checkConfig(c.yaml);
            assert.equal(r.code, 2, `${c.key}: exit ${r.code}; stderr:\n${r.stderr}`);
            assert.ok(r.stderr.includes(`${r.path}:${c.line}:`), `${c.key}: stderr should name ${r.path}:${c.line}:\n${r.stderr}`);
            assert.ok(r.stderr.includes(c.key), `stderr should name ${c.key}:\n${r.stderr}`);
        }
    });

    it('values of the wrong type or form exit 2', { timeout: 60_000 }, async () => {
        for (const yaml of [
            'runtime:\n  workers: many\n',
            'runtime:\n  log_level: chatty\n',
            'runtime:\n  trace_hooks: maybe\n',
            'endpoints:\n  - name: p\n    type: socks\n    listen: [127.0.0.1:0]\n',
            'endpoints:\n  - name: p\n    type: http_proxy\n    listen: [not-an-address]\n',
            'endpoints:\n  - name: p\n    type: http_proxy\n    listen: [127.0.0.1:0]\n    allow_destinations: [10.0.0.0/33]\n',
        ]) {
            const r = await checkConfig(yaml);
            assert.equal(r.code, 2, `expected exit 2 for:\n${yaml}stderr:\n${r.stderr}`);
            assert.ok(r.stderr.includes(r.path), `stderr should name the file:\n${r.stderr}`);
        }
    });

    it('example apps check their own settings', { timeout: 60_000 }, async () => {
        const good = await checkConfig(
            { ...proxyConfig({ allow_destinations: LOOPBACK }), app: { psk: 'secret', private_cidrs: LOOPBACK } },
            { app: 'egress-firewall' },
        );
        assert.equal(good.code, 0, good.stderr);
        const bad = await checkConfig(
            ['endpoints:', '  - name: proxy', '    type: http_proxy', '    listen: [127.0.0.1:0]', 'app:', '  pks: secret', ''].join(
                '\n',
            ),
            { app: 'egress-firewall' },
        );
        assert.equal(bad.code, 2, bad.stderr);
        assert.ok(bad.stderr.includes(`${bad.path}:6:3: app.pks: unknown key 'pks'`), bad.stderr);
        assert.match(bad.stderr, /did you mean 'psk'\?/);
        // The plain turnpike binary has no app settings at all.
        const none = await checkConfig({ ...proxyConfig(), app: { psk: 'x' } });
        assert.equal(none.code, 2, none.stderr);
    });
});
