/**
 * Starting, watching and stopping a Turnpike process (the `turnpike` binary or any app built on
 * tp_main(), which share one CLI), and running its CLI for config checks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import { track } from './cleanup.js';
import { appBinary, assertExecutable } from './paths.js';
import { sleep } from './wait.js';
import { toYaml } from './yaml.js';

/** A config as YAML text, or as a plain object the testkit serializes to YAML. */
export type ConfigInput = string | Record<string, unknown>;

/** One JSON log line from Turnpike's stderr. */
export interface LogLine {
    level?: string;
    msg?: string;
    [key: string]: unknown;
}

/** Either a predicate or an object whose every key must equal the log line's (deep equality). */
export type LogMatcher = ((line: LogLine) => boolean) | Partial<LogLine>;

/** A listening endpoint, from the `ready` log line. */
export interface Endpoint {
    name: string;
    /** 'http_proxy' | 'http' | 'tcp' */
    type: string;
    /** Host of the first listen address ('127.0.0.1', '::1'). */
    host: string;
    /** Port of the first listen address (the real one when the config said port 0). */
    port: number;
    /** 'host:port' of the first listen address ('[::1]:8080' for IPv6). */
    address: string;
    /** Every listen address of the endpoint, as logged. */
    listen: string[];
}

export interface ExitInfo {
    code: number | null;
    signal: NodeJS.Signals | null;
}

/** A connection as Turnpike's trace logs describe it. */
export interface ConnectionTrace {
    conn: number;
    peer: string;
    /** Hook names in the order they fired. */
    hooks: string[];
    /** The `close` log line (reason, bytes_from_client, bytes_to_client, duration_us, ...). */
    close: LogLine;
}

export interface StartOptions {
    /** The config, as YAML text or as an object. */
    config: ConfigInput;
    /** Which binary: 'turnpike' (default) or an example app's name ('egress-firewall', 'next-hop'),
     * resolved under $TURNPIKE_BUILD (default <repo>/build/asan). */
    app?: string;
    /** Path to the binary; wins over `app`. Use this for your own app. */
    binary?: string;
    /** Extra command-line arguments (after `-c FILE`). */
    args?: string[];
    /** Environment variables added to (or, with value undefined, removed from) the test's environment. */
    env?: Record<string, string | undefined>;
    /** How long to wait for the `ready` log line (default 20 s; ASan builds start slowly). */
    readyTimeoutMs?: number;
    /** Working directory of the process (default: the temp directory holding the config). */
    cwd?: string;
    /** Run it inside this network namespace (`ip netns exec NAME ...`; see createNetns()). */
    netns?: string;
}

const DEFAULT_READY_TIMEOUT_MS = 20_000;
const DEFAULT_STOP_TIMEOUT_MS = 15_000;
const STDERR_KEEP_BYTES = 1 << 20;

/** Lines that show a sanitizer (ASan, LSan, UBSan) found a bug. */
const SANITIZER_RE = /ERROR: (?:AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)|runtime error: |SUMMARY: (?:Address|Undefined|Leak)/;

/** Writes a config to a fresh temp directory and returns the file's path (removed by cleanup()). */
export function writeConfigFile(config: ConfigInput, name = 'turnpike.yaml'): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turnpike-testkit-'));
    const file = path.join(dir, name);
    fs.writeFileSync(file, typeof config === 'string' ? config : toYaml(config));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`temp dir ${dir}`, remove, remove);
    return file;
}

/**
 * Starts Turnpike with `config` and resolves once it logged `ready` (so every endpoint listens).
 * Rejects with the stderr tail when the process exits first or `ready` does not come in time.
 */
export async function startTurnpike(options: StartOptions): Promise<Turnpike> {
    const binary = options.binary ? path.resolve(options.binary) : appBinary(options.app ?? 'turnpike');
    assertExecutable(binary);
    const configPath = writeConfigFile(options.config);
    const tp = new Turnpike(binary, configPath, options);
    const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    try {
        await tp.waitForLog({ msg: 'ready' }, readyTimeoutMs);
    } catch (err) {
        tp.kill('SIGKILL');
        await tp.exited;
        throw new Error(
            `Turnpike did not become ready: ${(err as Error).message.split('\n')[0]}\n` +
                `  binary: ${binary}\n  config (${configPath}):\n${indent(tp.configText, 4)}` +
                `  stderr tail:\n${indent(tp.stderrTail(40), 4)}`,
        );
    }
    return tp;
}

/**
 * Starts Turnpike, runs `fn` with it, then stops it (SIGTERM) and, unless `expectCleanExit` is
 * false, asserts it exited 0 without sanitizer reports. Turnpike is stopped even when `fn` throws.
 */
export async function withTurnpike<T>(
    options: StartOptions & { expectCleanExit?: boolean },
    fn: (tp: Turnpike) => Promise<T> | T,
): Promise<T> {
    const tp = await startTurnpike(options);
    let result: T;
    try {
        result = await fn(tp);
    } catch (err) {
        // If Turnpike died during the test, that is most likely why it failed: say so. (A crash
        // can close client sockets a moment before the exit is seen: give it that moment.)
        await Promise.race([tp.exited, sleep(300)]);
        const diedEarly = tp.signalsSent === 0 ? tp.exitStatus : null;
        await tp.stop().catch(() => undefined);
        const report = tp.sanitizerReport();
        if (err instanceof Error && (diedEarly || report)) {
            err.message +=
                (diedEarly ? `\n  Turnpike exited during the test (${fmtExit(diedEarly)})` : '') +
                (report ? `\n  sanitizer report:\n${indent(report, 4)}` : `\n  stderr tail:\n${indent(tp.stderrTail(30), 4)}`);
        }
        throw err;
    }
    await tp.stop();
    if (options.expectCleanExit !== false) await tp.assertCleanExit();
    return result;
}

/** A running (or exited) Turnpike process. */
export class Turnpike {
    /** The process id. */
    readonly pid: number;
    /** The binary that runs. */
    readonly binary: string;
    /** The config file it was started with. */
    readonly configPath: string;
    /** The config text (YAML) it was started with. */
    readonly configText: string;
    /** Every JSON log line so far, in order. */
    readonly logs: LogLine[] = [];
    /** Lines of stderr that were not JSON (sanitizer reports, crashes), in order. */
    readonly otherStderrLines: string[] = [];
    /** Resolves when the process has exited (never rejects). */
    readonly exited: Promise<ExitInfo>;

    private readonly child: ChildProcess;
    private exitInfo: ExitInfo | null = null;
    private stderrText = '';
    private stdoutText = '';
    private partial = '';
    private readonly listeners = new Set<() => void>();
    private readyEndpoints: Endpoint[] | null = null;
    private stopping: Promise<ExitInfo> | null = null;
    private signalCount = 0;
    private readonly untrack: () => void;

    /** Use startTurnpike(). */
    constructor(binary: string, configPath: string, options: StartOptions) {
        this.binary = binary;
        this.configPath = configPath;
        this.configText = fs.readFileSync(configPath, 'utf8');
        const env: NodeJS.ProcessEnv = { ...process.env };
        for (const [k, v] of Object.entries(options.env ?? {})) {
            if (v === undefined) delete env[k];
            else env[k] = v;
        }
        const argv = ['-c', configPath, ...(options.args ?? [])];
        const [cmd, cmdArgs] = options.netns
            ? ['ip', ['netns', 'exec', options.netns, binary, ...argv]]
            : [binary, argv];
        this.child = spawn(cmd, cmdArgs, {
            stdio: ['ignore', 'pipe', 'pipe'],
            env,
            cwd: options.cwd ?? path.dirname(configPath),
        });
        this.pid = this.child.pid ?? -1;
        this.child.stdout!.setEncoding('utf8');
        this.child.stdout!.on('data', (s: string) => {
            this.stdoutText += s;
        });
        this.child.stderr!.setEncoding('utf8');
        this.child.stderr!.on('data', (s: string) => this.onStderr(s));
        this.exited = new Promise<ExitInfo>((resolve) => {
            let spawnError: Error | undefined;
            this.child.once('error', (err) => {
                spawnError = err;
                // 'close' may not follow a spawn failure.
                if (this.child.pid === undefined) finish(null, null);
            });
            const finish = (code: number | null, signal: NodeJS.Signals | null) => {
                if (this.exitInfo) return;
                if (this.partial) this.onLine(this.partial);
                this.partial = '';
                if (spawnError) this.otherStderrLines.push(`spawn failed: ${spawnError.message}`);
                this.exitInfo = { code, signal };
                this.untrack();
                this.notify();
                resolve(this.exitInfo);
            };
            // 'close' fires after stdio has been drained, so every log line is in before exited resolves.
            this.child.once('close', finish);
        });
        const pid = this.pid;
        this.untrack = track(
            `turnpike pid ${pid}`,
            () => this.stop(),
            () => {
                if (!this.exitInfo && pid > 0) process.kill(pid, 'SIGKILL');
            },
        );
    }

    /** How many signals the testkit sent it (signal(), kill(), stop()). */
    get signalsSent(): number {
        return this.signalCount;
    }

    /** The exit status, or null while running. */
    get exitStatus(): ExitInfo | null {
        return this.exitInfo;
    }

    /** True until the process has exited. */
    get running(): boolean {
        return this.exitInfo === null;
    }

    /** Everything written to stderr (the last MiB of it). */
    get stderr(): string {
        return this.stderrText;
    }

    /** Everything written to stdout. */
    get stdout(): string {
        return this.stdoutText;
    }

    /** The endpoints from the `ready` line. */
    get endpoints(): Endpoint[] {
        if (!this.readyEndpoints) throw new Error('Turnpike has not logged ready yet');
        return this.readyEndpoints;
    }

    /** The endpoint called `name` (any name may be omitted when there is only one endpoint). */
    endpoint(name?: string): Endpoint {
        const eps = this.endpoints;
        if (name === undefined) {
            if (eps.length === 1) return eps[0]!;
            throw new Error(`endpoint(): name one of ${eps.map((e) => e.name).join(', ')}`);
        }
        const ep = eps.find((e) => e.name === name);
        if (!ep) throw new Error(`no endpoint '${name}'; the ready line lists: ${eps.map((e) => e.name).join(', ') || 'none'}`);
        return ep;
    }

    /** Log lines with this `msg`. */
    logsWithMsg(msg: string): LogLine[] {
        return this.logs.filter((l) => l.msg === msg);
    }

    /** The first log line matching, or undefined. */
    findLog(match: LogMatcher, from = 0): LogLine | undefined {
        const pred = toPredicate(match);
        for (let i = from; i < this.logs.length; i++) if (pred(this.logs[i]!)) return this.logs[i];
        return undefined;
    }

    /**
     * Resolves with the first log line (from index `from`, default 0: lines already logged count)
     * that matches; rejects after the timeout (default 5 s) or when the process exits first.
     */
    waitForLog(match: LogMatcher, options: number | { timeoutMs?: number; from?: number } = {}): Promise<LogLine> {
        const opts = typeof options === 'number' ? { timeoutMs: options } : options;
        const timeoutMs = opts.timeoutMs ?? 5000;
        const pred = toPredicate(match);
        const describe = typeof match === 'function' ? match.toString() : JSON.stringify(match);
        let next = opts.from ?? 0;
        return new Promise<LogLine>((resolve, reject) => {
            const check = () => {
                for (; next < this.logs.length; next++) {
                    if (pred(this.logs[next]!)) {
                        done();
                        resolve(this.logs[next]!);
                        return;
                    }
                }
                if (this.exitInfo) {
                    done();
                    reject(
                        new Error(
                            `Turnpike exited (${fmtExit(this.exitInfo)}) before logging a line matching ${describe}\n` +
                                `  stderr tail:\n${indent(this.stderrTail(30), 4)}`,
                        ),
                    );
                }
            };
            const timer = setTimeout(() => {
                done();
                reject(
                    new Error(
                        `timed out after ${timeoutMs} ms waiting for a log line matching ${describe}\n` +
                            `  stderr tail:\n${indent(this.stderrTail(30), 4)}`,
                    ),
                );
            }, timeoutMs);
            const done = () => {
                clearTimeout(timer);
                this.listeners.delete(check);
            };
            this.listeners.add(check);
            check();
        });
    }

    /**
     * The trace of the connection whose client used local port `client` (a number, or anything with
     * a `localPort`, like a net.Socket or a testkit result): waits (default 5 s) until Turnpike
     * logged its `close` line. Needs `runtime.trace_hooks: true` for the hook list.
     */
    async connectionFor(client: number | { localPort?: number | undefined }, timeoutMs = 5000): Promise<ConnectionTrace> {
        const port = typeof client === 'number' ? client : client.localPort;
        if (!port) throw new Error('connectionFor(): the client has no local port (read it before the socket closes)');
        const byPort = (l: LogLine) => (l.msg === 'hook' || l.msg === 'close') && peerPort(l.peer) === port;
        // The newest connection from that port (ports can be reused over a long run).
        const first = await this.waitForLog(byPort, timeoutMs).catch((err: Error) => {
            throw new Error(`no connection from client port ${port} in Turnpike's log: ${err.message}`);
        });
        let conn = first.conn;
        for (let i = this.logs.length - 1; i >= 0; i--) {
            const l = this.logs[i]!;
            if (byPort(l)) {
                conn = l.conn;
                break;
            }
        }
        const close = await this.waitForLog({ msg: 'close', conn }, timeoutMs).catch((err: Error) => {
            throw new Error(`connection ${conn} (client port ${port}) did not close: ${err.message}`);
        });
        // The close hook's trace line may come just after the close line.
        await this.waitForLog({ msg: 'hook', conn, hook: 'ingress.handle_connection_close' }, 250).catch(() => undefined);
        const hooks = this.logs.filter((l) => l.msg === 'hook' && l.conn === conn).map((l) => String(l.hook));
        if (hooks.length === 0 && !this.logs.some((l) => l.msg === 'hook')) {
            throw new Error('Turnpike logged no hook lines at all: set runtime.trace_hooks: true in the config');
        }
        return { conn: Number(conn), peer: String(close.peer ?? first.peer), hooks, close };
    }

    /** The hook names, in order, that the connection from client port `client` passed (see connectionFor). */
    async hooksFor(client: number | { localPort?: number | undefined }, timeoutMs = 5000): Promise<string[]> {
        return (await this.connectionFor(client, timeoutMs)).hooks;
    }

    /** Resident set size in bytes (VmRSS from /proc/PID/status). */
    rss(): number {
        return this.procStatusBytes('VmRSS');
    }

    /** Peak resident set size in bytes since start (VmHWM). */
    rssPeak(): number {
        return this.procStatusBytes('VmHWM');
    }

    /** Sends a signal (e.g. 'SIGTERM' to start draining, 'SIGHUP'). */
    signal(sig: NodeJS.Signals): void {
        if (this.exitInfo) throw new Error(`cannot send ${sig}: Turnpike already exited (${fmtExit(this.exitInfo)})`);
        this.signalCount++;
        this.child.kill(sig);
    }

    /** Like signal() but quiet when the process is gone. */
    kill(sig: NodeJS.Signals = 'SIGKILL'): void {
        if (this.exitInfo) return;
        this.signalCount++;
        this.child.kill(sig);
    }

    /**
     * Stops Turnpike: SIGTERM, then SIGKILL if it has not exited after `timeoutMs` (default 15 s).
     * Resolves with the exit status. Safe to call more than once.
     */
    stop(options: { timeoutMs?: number } = {}): Promise<ExitInfo> {
        if (this.exitInfo) return Promise.resolve(this.exitInfo);
        if (!this.stopping) {
            const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
            this.kill('SIGTERM');
            const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
            this.stopping = this.exited.finally(() => clearTimeout(timer));
        }
        return this.stopping;
    }

    /** The sanitizer report in stderr (ASan, LSan, UBSan), or null if there is none. */
    sanitizerReport(): string | null {
        const lines = this.stderrText.split('\n');
        const i = lines.findIndex((l) => SANITIZER_RE.test(l));
        return i < 0 ? null : lines.slice(Math.max(0, i - 2), i + 60).join('\n');
    }

    /** Waits for exit and throws unless it was status 0, without a signal and without sanitizer reports. */
    async assertCleanExit(): Promise<void> {
        const info = await this.exited;
        const report = this.sanitizerReport();
        if (info.code !== 0 || info.signal !== null || report) {
            throw new Error(
                `Turnpike did not exit cleanly (${fmtExit(info)})` +
                    (report ? `\n  sanitizer report:\n${indent(report, 4)}` : `\n  stderr tail:\n${indent(this.stderrTail(30), 4)}`),
            );
        }
    }

    /** The last `n` lines of stderr, for error messages. */
    stderrTail(n = 20): string {
        const lines = (this.stderrText + this.partial).split('\n');
        if (lines[lines.length - 1] === '') lines.pop();
        return lines.slice(-n).join('\n');
    }

    private procStatusBytes(field: string): number {
        if (this.exitInfo) throw new Error(`Turnpike exited (${fmtExit(this.exitInfo)}); no ${field} to read`);
        const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
        const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
        if (!m) throw new Error(`no ${field} in /proc/${this.pid}/status`);
        return Number(m[1]) * 1024;
    }

    private onStderr(s: string): void {
        this.stderrText += s;
        if (this.stderrText.length > STDERR_KEEP_BYTES * 2) this.stderrText = this.stderrText.slice(-STDERR_KEEP_BYTES);
        const parts = (this.partial + s).split('\n');
        this.partial = parts.pop()!;
        for (const line of parts) this.onLine(line);
        this.notify();
    }

    private onLine(raw: string): void {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line.trim() === '') return;
        let parsed: unknown;
        if (line.startsWith('{')) {
            try {
                parsed = JSON.parse(line);
            } catch {
                parsed = undefined;
            }
        }
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
            const entry = parsed as LogLine;
            this.logs.push(entry);
            if (entry.msg === 'ready' && !this.readyEndpoints) this.readyEndpoints = parseEndpoints(entry);
        } else {
            this.otherStderrLines.push(line);
        }
    }

    private notify(): void {
        for (const l of [...this.listeners]) l();
    }
}

export interface RunResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
}

export interface RunOptions {
    app?: string;
    binary?: string;
    env?: Record<string, string | undefined>;
    /** Written to the process's stdin. */
    input?: string | Buffer;
    /** Kill it (SIGKILL) after this long (default 20 s). */
    timeoutMs?: number;
}

/** Runs the binary with `args` to completion (e.g. ['--version'], ['--print-default-config']). */
export function runTurnpike(args: string[], options: RunOptions = {}): Promise<RunResult> {
    const binary = options.binary ? path.resolve(options.binary) : appBinary(options.app ?? 'turnpike');
    assertExecutable(binary);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(options.env ?? {})) {
        if (v === undefined) delete env[k];
        else env[k] = v;
    }
    return new Promise<RunResult>((resolve, reject) => {
        const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
        child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
        child.stdin.on('error', () => undefined);
        child.stdin.end(options.input ?? '');
        const untrack = track(`${path.basename(binary)} ${args.join(' ')}`, () => child.kill('SIGKILL'), () => child.kill('SIGKILL'));
        const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
        child.once('error', (err) => {
            clearTimeout(timer);
            untrack();
            reject(err);
        });
        child.once('close', (code, signal) => {
            clearTimeout(timer);
            untrack();
            resolve({ code, signal, stdout, stderr });
        });
    });
}

/** Writes `config` to a temp file and runs `--check-config -c FILE`; `path` is the file that was checked. */
export async function checkConfig(config: ConfigInput, options: RunOptions = {}): Promise<RunResult & { path: string }> {
    const file = writeConfigFile(config);
    const result = await runTurnpike(['--check-config', '-c', file], options);
    return { ...result, path: file };
}

function toPredicate(match: LogMatcher): (line: LogLine) => boolean {
    if (typeof match === 'function') return match;
    const entries = Object.entries(match);
    return (line) => entries.every(([k, v]) => isDeepStrictEqual(line[k], v));
}

/** The port of a 'host:port' / '[v6]:port' peer string, or undefined. */
export function peerPort(peer: unknown): number | undefined {
    if (typeof peer !== 'string') return undefined;
    const m = /:(\d+)$/.exec(peer);
    return m ? Number(m[1]) : undefined;
}

/** Splits 'host:port' or '[v6]:port'. */
export function splitHostPort(address: string): { host: string; port: number } {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
    if (!m) throw new Error(`not a host:port address: ${JSON.stringify(address)}`);
    return { host: m[1]!, port: Number(m[2]) };
}

function parseEndpoints(ready: LogLine): Endpoint[] {
    const list = ready.endpoints;
    if (!Array.isArray(list)) return [];
    return list.map((raw) => {
        const e = raw as { name?: unknown; type?: unknown; listen?: unknown };
        const listen = Array.isArray(e.listen) ? e.listen.map(String) : [];
        const first = listen[0];
        const hp = first ? splitHostPort(first) : { host: '', port: 0 };
        return {
            name: String(e.name),
            type: String(e.type),
            host: hp.host,
            port: hp.port,
            address: first ?? '',
            listen,
        };
    });
}

function fmtExit(e: ExitInfo): string {
    return e.signal ? `signal ${e.signal}` : `status ${e.code}`;
}

function indent(text: string, n: number): string {
    const pad = ' '.repeat(n);
    return (
        text
            .split('\n')
            .map((l) => pad + l)
            .join('\n') + '\n'
    );
}
