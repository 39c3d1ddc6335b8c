/** Small timing helpers shared by the testkit and useful in tests. */
import { setTimeout as delay } from 'node:timers/promises';
import net from 'node:net';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
    return delay(ms).then(() => undefined);
}

/** Settles like `promise`, or rejects with `message` after `ms` milliseconds. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string | (() => string)): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(typeof message === 'function' ? message() : message)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface WaitForOptions {
    /** Give up after this long (default 5000 ms). */
    timeoutMs?: number;
    /** Poll this often (default 20 ms). */
    intervalMs?: number;
    /** Error message on timeout. */
    message?: string | (() => string);
}

/** Polls `condition` until it returns a truthy value, which it resolves with; rejects on timeout. */
export async function waitFor<T>(condition: () => T | Promise<T>, options: WaitForOptions = {}): Promise<NonNullable<T>> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = await condition();
        if (v) return v as NonNullable<T>;
        if (Date.now() >= deadline) {
            const m = options.message;
            throw new Error(
                (typeof m === 'function' ? m() : m) ?? `condition not met within ${timeoutMs} ms: ${condition.toString()}`,
            );
        }
        await sleep(options.intervalMs ?? 20);
    }
}

/**
 * A loopback TCP port that nothing listens on (bound, then released), for "connection refused"
 * tests. Another process could take it in between, but on a test machine that is very unlikely.
 */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, resolve);
    });
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
}
