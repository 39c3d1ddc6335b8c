/**
 * Test certificates made with GnuTLS's certtool (Debian's gnutls-bin): a throw-away CA and a
 * server certificate it signed, for localhost, 127.0.0.1 and ::1, in a temp directory that
 * cleanup() removes.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { track } from './cleanup.js';

export interface TestCerts {
    /** The directory holding every file. */
    dir: string;
    /** PEM of the CA certificate: what a client trusts (`--ca`). */
    caFile: string;
    /** PEM of the server certificate (signed by the CA). */
    certFile: string;
    /** PEM of the server's private key. */
    keyFile: string;
}

export interface CertOptions {
    /** DNS names in the certificate (default ['localhost']). */
    dnsNames?: string[];
    /** IP addresses in the certificate (default ['127.0.0.1', '::1']). */
    ipAddresses?: string[];
}

function certtool(args: string[]): void {
    execFileSync('certtool', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A certificate (server or client) issued by a TestCerts CA. */
export interface IssuedCert {
    /** PEM of the certificate. */
    certFile: string;
    /** PEM of its private key. */
    keyFile: string;
}

export interface IssueOptions {
    /** Common name (default: the first DNS name, or 'turnpike test client'). */
    cn?: string;
    /** DNS names (SANs). */
    dnsNames?: string[];
    /** IP addresses (SANs). */
    ipAddresses?: string[];
    /** E-mail addresses (SANs). */
    emails?: string[];
    /** 'server' (default: tls_www_server) or 'client' (tls_www_client). */
    usage?: 'server' | 'client';
    /** Days of validity (default 1); a negative number makes a certificate that has expired. */
    days?: number;
    /** A certificate whose validity starts in a year (not yet valid). */
    notYetValid?: boolean;
}

let issued = 0;

/**
 * Issues another certificate from the CA of `ca` (made by makeTestCerts): a second server name,
 * a wildcard (`dnsNames: ['*.example.test']`), or a client certificate for mTLS.
 */
export function issueCert(ca: TestCerts, options: IssueOptions = {}): IssuedCert {
    const n = ++issued;
    const f = (name: string) => path.join(ca.dir, `issued-${n}-${name}`);
    const cn = options.cn ?? options.dnsNames?.[0] ?? 'turnpike test client';
    const lines = [`cn = "${cn}"`, `serial = ${1000 + n}`];
    for (const d of options.dnsNames ?? []) lines.push(`dns_name = "${d}"`);
    for (const ip of options.ipAddresses ?? []) lines.push(`ip_address = "${ip}"`);
    for (const e of options.emails ?? []) lines.push(`email = "${e}"`);
    const days = options.days ?? 1;
    if (options.notYetValid) {
        const y = new Date().getUTCFullYear() + 1;
        lines.push(`activation_date = "${y}-01-01 00:00:00 UTC"`, `expiration_date = "${y}-12-31 00:00:00 UTC"`);
    } else if (days < 0) {
        lines.push('activation_date = "2001-01-01 00:00:00 UTC"', 'expiration_date = "2001-01-02 00:00:00 UTC"');
    } else {
        lines.push(`expiration_days = ${days}`);
    }
    lines.push(options.usage === 'client' ? 'tls_www_client' : 'tls_www_server', 'signing_key', 'encryption_key');
    fs.writeFileSync(f('tmpl'), lines.join('\n') + '\n');
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', f('key.pem')]);
    certtool([
        '--generate-certificate', '--load-privkey', f('key.pem'), '--load-ca-certificate', ca.caFile,
        '--load-ca-privkey', path.join(ca.dir, 'ca.key'), '--template', f('tmpl'), '--outfile', f('cert.pem'),
    ]);
    return { certFile: f('cert.pem'), keyFile: f('key.pem') };
}

/** An RFC 7250 raw public key pair. */
export interface RawKey {
    /** PEM private key. */
    keyFile: string;
    /** PEM SubjectPublicKeyInfo (what `gnutls-cli --rawpkfile` and `raw_public_key.public_key` take). */
    pubFile: string;
    /** SHA-256 (hex) of the SubjectPublicKeyInfo DER: what `raw_public_key.peers` lists. */
    sha256: string;
}

/** Makes an ECDSA key pair for raw public key (RFC 7250) handshakes, in `dir`. */
export function makeRawKey(dir: string, name: string): RawKey {
    const keyFile = path.join(dir, `${name}.key`);
    const pubFile = path.join(dir, `${name}.pub`);
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', keyFile]);
    const pub = execFileSync('certtool', ['--pubkey-info', '--load-privkey', keyFile, '--outder'], {
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pem = `-----BEGIN PUBLIC KEY-----\n${pub.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PUBLIC KEY-----\n`;
    fs.writeFileSync(pubFile, pem);
    return { keyFile, pubFile, sha256: crypto.createHash('sha256').update(pub).digest('hex') };
}

/** Makes a CA and a server certificate signed by it (ECDSA P-256, valid for one day). */
export function makeTestCerts(options: CertOptions = {}): TestCerts {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-certs-'));
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    track(`certs ${dir}`, remove, remove);
    const f = (name: string) => path.join(dir, name);
    fs.writeFileSync(f('ca.tmpl'), 'cn = "turnpike test CA"\nca\ncert_signing_key\nexpiration_days = 1\n');
    const names = (options.dnsNames ?? ['localhost']).map((n) => `dns_name = "${n}"\n`).join('');
    const ips = (options.ipAddresses ?? ['127.0.0.1', '::1']).map((ip) => `ip_address = "${ip}"\n`).join('');
    fs.writeFileSync(
        f('server.tmpl'),
        `cn = "${options.dnsNames?.[0] ?? 'localhost'}"\n${names}${ips}expiration_days = 1\ntls_www_server\nsigning_key\nencryption_key\n`,
    );
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', f('ca.key')]);
    certtool(['--generate-self-signed', '--load-privkey', f('ca.key'), '--template', f('ca.tmpl'), '--outfile', f('ca.pem')]);
    certtool(['--generate-privkey', '--key-type', 'ecdsa', '--outfile', f('server.key')]);
    certtool([
        '--generate-certificate', '--load-privkey', f('server.key'), '--load-ca-certificate', f('ca.pem'),
        '--load-ca-privkey', f('ca.key'), '--template', f('server.tmpl'), '--outfile', f('server.pem'),
    ]);
    return { dir, caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key') };
}
