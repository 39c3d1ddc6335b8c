/** The memory of a process under test, from /proc (Linux): resident set size now and its peak. */
import fs from 'node:fs';

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]);
}

/** Resident set size of `pid` in KiB (VmRSS). */
export function rssKiB(pid: number): number {
    return statusKiB(pid, 'VmRSS');
}

/**
 * Starts a peak measurement: the kernel's high-water mark (VmHWM) is reset to the current RSS
 * (`5` to /proc/PID/clear_refs, Linux 4.0+), so that peakRssKiB() later reports the largest RSS
 * since this call, including short peaks that sampling would miss. Returns the RSS now (KiB).
 */
export function resetPeakRss(pid: number): number {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return rssKiB(pid);
}

/** The largest resident set size of `pid` (KiB) since it started or since resetPeakRss(). */
export function peakRssKiB(pid: number): number {
    return statusKiB(pid, 'VmHWM');
}
