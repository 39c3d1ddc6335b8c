/** Where the Turnpike binaries are. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, when the testkit runs from its place in the Turnpike repo (testkit/dist/src). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** $TURNPIKE_BUILD, or <repo>/build/asan. */
export function buildDir(): string {
    return process.env.TURNPIKE_BUILD || path.join(REPO_ROOT, 'build', 'asan');
}

/**
 * The binary of an app: 'turnpike' is $TURNPIKE_BUILD/turnpike, any other name
 * $TURNPIKE_BUILD/examples/NAME; a name with a slash is taken as a path.
 */
export function appBinary(app = 'turnpike'): string {
    if (app.includes('/')) return path.resolve(app);
    return app === 'turnpike' ? path.join(buildDir(), 'turnpike') : path.join(buildDir(), 'examples', app);
}

/** A command-line tool built from tools/NAME/main.c: $TURNPIKE_BUILD/tools/NAME. */
export function toolBinary(name: string): string {
    return path.join(buildDir(), 'tools', name);
}

/** Throws a helpful error when `binary` is missing or not executable. */
export function assertExecutable(binary: string): void {
    try {
        fs.accessSync(binary, fs.constants.X_OK);
    } catch {
        throw new Error(
            `Turnpike binary not found or not executable: ${binary}\n` +
                `  build it (make build-asan), or point TURNPIKE_BUILD at a build directory, ` +
                `or pass {binary: '/path/to/your-app'}`,
        );
    }
}
