/**
 * Network namespaces a test makes for itself (Linux, root): a private loopback, veth links, routes
 * and an /etc/hosts of its own (iproute2 bind-mounts /etc/netns/NAME/hosts over /etc/hosts for
 * every `ip netns exec NAME ...`). Removed by cleanup() and on exit.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { track } from './cleanup.js';

export interface Netns {
    readonly name: string;
    /** Runs a command inside the namespace and returns its stdout (throws on a non-zero exit). */
    run(cmd: string, args: string[]): string;
    /** Starts a long-running command inside the namespace (killed by cleanup()). */
    spawn(cmd: string, args: string[]): ChildProcess;
    /** Writes the namespace's /etc/hosts (lines "ip name..."). */
    setHosts(lines: string[]): void;
    /**
     * Makes `fd00::/64` on-link through a veth pair whose far end answers nothing: a connect to
     * any other address in it (e.g. fd00::dead) sends SYNs that go nowhere (a black hole for a few
     * seconds, then EHOSTUNREACH). The namespace has `fd00::1` itself.
     */
    addBlackhole6(): void;
    /** Removes the namespace (cleanup() does it too). */
    remove(): void;
}

/** True when this process may make namespaces (root, with iproute2). */
export function canMakeNetns(): boolean {
    if (process.getuid?.() !== 0) return false;
    try {
        execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
        return true;
    } catch {
        return false;
    }
}

let counter = 0;

/** Makes a namespace with loopback up. */
export function createNetns(prefix = 'tpk'): Netns {
    const name = `${prefix}-${process.pid}-${counter++}`;
    execFileSync('ip', ['netns', 'add', name]);
    const etc = path.join('/etc/netns', name);
    const children: ChildProcess[] = [];
    let removed = false;
    const remove = (): void => {
        if (removed) return;
        removed = true;
        for (const c of children) c.kill('SIGKILL');
        try {
            execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
        } catch {
            /* already gone */
        }
        fs.rmSync(etc, { recursive: true, force: true });
    };
    const untrack = track(`netns ${name}`, () => remove(), () => remove());
    const ns: Netns = {
        name,
        run(cmd, args) {
            return execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8' });
        },
        spawn(cmd, args) {
            const c = spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: 'ignore' });
            children.push(c);
            return c;
        },
        setHosts(lines) {
            fs.mkdirSync(etc, { recursive: true });
            fs.writeFileSync(path.join(etc, 'hosts'), lines.join('\n') + '\n');
        },
        remove() {
            untrack();
            remove();
        },
        addBlackhole6() {
            ns.run('ip', ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
            ns.run('ip', ['link', 'set', 'v0', 'up']);
            ns.run('ip', ['link', 'set', 'v1', 'up']);
            ns.run('ip', ['-6', 'addr', 'add', 'fd00::1/64', 'dev', 'v0', 'nodad']);
        },
    };
    ns.run('ip', ['link', 'set', 'lo', 'up']);
    return ns;
}
