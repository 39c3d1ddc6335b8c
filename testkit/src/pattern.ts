/**
 * Verifiable byte streams for data-integrity tests: a repeating pattern whose period (251, a prime)
 * never lines up with buffer sizes, so a dropped, duplicated or reordered chunk shows up as a
 * mismatch at a precise offset; and running SHA-256 hashes for random data.
 */
import crypto from 'node:crypto';

/** The pattern's period: byte at stream offset i is i % 251. */
export const PATTERN_PERIOD = 251;

/** `length` bytes of the pattern, starting at stream offset `offset`. */
export function patternBytes(length: number, offset = 0): Buffer {
    const b = Buffer.allocUnsafe(length);
    let v = offset % PATTERN_PERIOD;
    for (let i = 0; i < length; i++) {
        b[i] = v;
        if (++v === PATTERN_PERIOD) v = 0;
    }
    return b;
}

// 251 * 4096 bytes (~1 MiB) plus one period of slack, so any chunk up to 1 MiB can be compared
// against one slice starting at its phase.
const REFERENCE = patternBytes(PATTERN_PERIOD * 4097);
const REFERENCE_SPAN = PATTERN_PERIOD * 4096;

/**
 * Checks a stream against the pattern chunk by chunk, at memcmp speed. `update()` returns false
 * once a byte was wrong; `mismatchAt` is then the stream offset of the first wrong byte.
 */
export class PatternVerifier {
    /** Bytes seen so far. */
    bytes = 0;
    /** Stream offset of the first byte that did not match, or null while everything matched. */
    mismatchAt: number | null = null;

    /** `startOffset`: the stream offset of the first byte that will be passed to update(). */
    constructor(readonly startOffset = 0) {}

    get ok(): boolean {
        return this.mismatchAt === null;
    }

    update(chunk: Uint8Array): boolean {
        let pos = 0;
        while (this.mismatchAt === null && pos < chunk.length) {
            const n = Math.min(chunk.length - pos, REFERENCE_SPAN);
            const phase = (this.startOffset + this.bytes) % PATTERN_PERIOD;
            const got = chunk.subarray(pos, pos + n);
            const want = REFERENCE.subarray(phase, phase + n);
            if (!Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) {
                let i = 0;
                while (got[i] === want[i]) i++;
                this.mismatchAt = this.startOffset + this.bytes + i;
            }
            this.bytes += n;
            pos += n;
        }
        if (this.mismatchAt !== null && pos < chunk.length) this.bytes += chunk.length - pos;
        return this.mismatchAt === null;
    }
}

/** SHA-256 of `data`, hex. */
export function sha256(data: Uint8Array | string): string {
    return crypto.createHash('sha256').update(data).digest('hex');
}

/** Counts bytes and hashes them as they stream by. */
export class StreamHash {
    bytes = 0;
    private readonly hash = crypto.createHash('sha256');

    update(chunk: Uint8Array): void {
        this.bytes += chunk.length;
        this.hash.update(chunk);
    }

    /** Hex SHA-256 of everything so far (may be called once). */
    digest(): string {
        return this.hash.digest('hex');
    }
}

/** `n` cryptographically random bytes (incompressible, unpatterned test payload). */
export function randomBytes(n: number): Buffer {
    return crypto.randomBytes(n);
}
