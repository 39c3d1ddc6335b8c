/**
 * Any program as a test peer (an example binary with its own command line, a tool): start it,
 * read its stdout and stderr line by line, wait for a line, stop it, and check that it exited
 * cleanly without a sanitizer report. For Turnpike's own CLI use startTurnpike().
 */
import { spawn, type ChildProcess } from 'node:child_process';

import { track } from './cleanup.js';
import { sleep, withTimeout } from './wait.js';

const SANITIZER_RE = /ERROR: (?:AddressSanitizer|LeakSanitizer)|runtime error: |SUMMARY: (?:Address|Undefined|Leak)/;

export interface ProcessExit {
    code: number | null;
    signal: NodeJS.Signals | null;
}

export class TestProcess {
    readonly pid: number;
    readonly stdoutLines: string[] = [];
    readonly stderrLines: string[] = [];
    readonly exited: Promise<ProcessExit>;
    private readonly child: ChildProcess;
    private exitInfo: ProcessExit | null = null;
    private readonly waiters = new Set<() => void>();
    private readonly untrack: () => void;

    constructor(readonly command: string, readonly args: string[], env?: Record<string, string>) {
        this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
        this.pid = this.child.pid ?? -1;
        const lines = (into: string[]) => {
            let partial = '';
            return (chunk: string) => {
                partial += chunk;
                const parts = partial.split('\n');
                partial = parts.pop()!;
                into.push(...parts);
                this.notify();
            };
        };
        this.child.stdout!.setEncoding('utf8').on('data', lines(this.stdoutLines));
        this.child.stderr!.setEncoding('utf8').on('data', lines(this.stderrLines));
        this.exited = new Promise((resolve) => {
            this.child.once('error', () => {
                if (this.child.pid === undefined) this.finish(null, null, resolve);
            });
            this.child.once('close', (code, signal) => this.finish(code, signal, resolve));
        });
        const pid = this.pid;
        this.untrack = track(`${command} pid ${pid}`, () => this.stop(), () => {
            if (!this.exitInfo && pid > 0) process.kill(pid, 'SIGKILL');
        });
    }

    private finish(code: number | null, signal: NodeJS.Signals | null, resolve: (e: ProcessExit) => void) {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        this.untrack();
        this.notify();
        resolve(this.exitInfo);
    }

    private notify() {
        for (const w of [...this.waiters]) w();
    }

    /** stdout lines that parse as JSON objects. */
    jsonLines(): Record<string, unknown>[] {
        const out: Record<string, unknown>[] = [];
        for (const l of this.stdoutLines) {
            try {
                const v = JSON.parse(l);
                if (v && typeof v === 'object') out.push(v);
            } catch {
                /* not JSON */
            }
        }
        return out;
    }

    /** Resolves with the first stdout JSON line for which `pred` holds (already printed or later). */
    waitForJson(pred: (v: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
        return withTimeout(
            new Promise((resolve, reject) => {
                const check = () => {
                    const hit = this.jsonLines().find(pred);
                    if (hit) {
                        this.waiters.delete(check);
                        resolve(hit);
                    } else if (this.exitInfo) {
                        this.waiters.delete(check);
                        reject(new Error(`${this.command} exited (${JSON.stringify(this.exitInfo)}) first\n${this.tail()}`));
                    }
                };
                this.waiters.add(check);
                check();
            }),
            timeoutMs,
            () => `timed out waiting for a line from ${this.command}\n${this.tail()}`,
        );
    }

    /** The last lines of stdout and stderr, for error messages. */
    tail(n = 20): string {
        return `  stdout:\n${this.stdoutLines.slice(-n).join('\n')}\n  stderr:\n${this.stderrLines.slice(-n).join('\n')}`;
    }

    /** The sanitizer report in stderr, or null. */
    sanitizerReport(): string | null {
        const i = this.stderrLines.findIndex((l) => SANITIZER_RE.test(l));
        return i < 0 ? null : this.stderrLines.slice(i).join('\n');
    }

    /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with the exit status. Idempotent. */
    async stop(timeoutMs = 15_000): Promise<ProcessExit> {
        if (this.exitInfo) return this.exitInfo;
        this.child.kill('SIGTERM');
        const e = await Promise.race([this.exited, sleep(timeoutMs).then(() => null)]);
        if (e) return e;
        this.child.kill('SIGKILL');
        return this.exited;
    }

    /** Throws unless the process exited 0 by itself or on SIGTERM, without a sanitizer report. */
    async assertCleanExit(): Promise<void> {
        const e = await this.exited;
        const report = this.sanitizerReport();
        if (e.code !== 0 || report) {
            throw new Error(`${this.command} did not exit cleanly (${JSON.stringify(e)})\n${report ?? this.tail()}`);
        }
    }
}

/** Starts `command args...` (tracked: cleanup() stops it). */
export function startProcess(command: string, args: string[], env?: Record<string, string>): TestProcess {
    return new TestProcess(command, args, env);
}

/** Runs `command args...` to completion; rejects after `timeoutMs` (and kills it). */
export async function runProcess(
    command: string,
    args: string[],
    timeoutMs = 60_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; proc: TestProcess }> {
    const p = startProcess(command, args);
    const e = await withTimeout(p.exited, timeoutMs, () => `${command} did not finish in ${timeoutMs} ms\n${p.tail()}`).catch(
        async (err) => {
            await p.stop(1000);
            throw err;
        },
    );
    return { ...e, stdout: p.stdoutLines.join('\n'), stderr: p.stderrLines.join('\n'), proc: p };
}
