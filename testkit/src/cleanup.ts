/**
 * Everything the testkit starts (Turnpike processes, origins, client sockets, temp files) is
 * registered here, so one `cleanup()` (e.g. in `afterEach`) closes it all, newest first, and the
 * test process never leaves a Turnpike behind: on exit, SIGINT or SIGTERM of the test process every
 * still-running child is killed with SIGKILL.
 */

interface Resource {
    readonly label: string;
    readonly close: () => unknown;
    /** Synchronous last resort, run when the test process exits (kill a child, remove a file). */
    readonly onExit?: () => void;
}

const resources: Resource[] = [];
let exitHandlersInstalled = false;

/**
 * Registers a resource. Returns a function that unregisters it (call it once the resource closed by
 * itself, so cleanup() does not try again).
 */
export function track(label: string, close: () => unknown, onExit?: () => void): () => void {
    const r: Resource = { label, close, onExit };
    resources.push(r);
    if (onExit) installExitHandlers();
    return () => {
        const i = resources.indexOf(r);
        if (i >= 0) resources.splice(i, 1);
    };
}

/** How many resources are open (started and neither closed nor cleaned up yet). */
export function openResources(): string[] {
    return resources.map((r) => r.label);
}

/**
 * Closes everything the testkit started and that is still open, newest first (clients, then
 * origins, then Turnpike processes, usually). Errors from individual closes are collected and
 * thrown together once everything has been tried.
 */
export async function cleanup(): Promise<void> {
    const errors: unknown[] = [];
    while (resources.length > 0) {
        const r = resources.pop()!;
        try {
            await r.close();
        } catch (err) {
            errors.push(new Error(`cleanup of ${r.label} failed: ${(err as Error)?.message ?? err}`));
        }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `testkit cleanup: ${errors.length} resources failed to close`);
}

function runExitHooks(): void {
    for (const r of resources.slice().reverse()) {
        try {
            r.onExit?.();
        } catch {
            /* the process is going away; nothing more to do */
        }
    }
}

function installExitHandlers(): void {
    if (exitHandlersInstalled) return;
    exitHandlersInstalled = true;
    process.on('exit', runExitHooks);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.once(sig, () => {
            runExitHooks();
            // Behave as if we had no handler: die by the same signal.
            process.kill(process.pid, sig);
        });
    }
}
