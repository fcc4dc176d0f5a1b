/**
 * Certificates as the control plane keeps them: rows in the store (names,
 * chain, validity, source) and one file set per certificate under
 * `DATA/certs/<id>/` — `cert.pem` and `key.pem` (0600, in a 0700 directory).
 * Keys never enter the store, the API, the audit log or a log line.
 *
 * Every way in (upload, local CA, ACME) goes through the same checks: the
 * names must be sites the tenant has configured (so nobody obtains or serves a
 * certificate for a name another tenant serves), the key must match, and one
 * name has one certificate. The front door reads `gatewayCertificates()`.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeSecret } from '../../core/secrets.js';
import { StrataError } from '../../core/errors.js';
import type { CertificateConfig } from '../../gateway/types.js';
import type { Store } from '../../store/store.js';
import type { Certificate, CertificateIssued, Tenant } from '../../store/types.js';
import { dnsNames, issuedFacts, splitPem } from './x509.js';

const invalid = (message: string): StrataError => new StrataError('STRATA_ERR_CERTIFICATE_INVALID', message);

/** Names a tenant may hold certificates for: exactly its configured sites (a wildcard site for a wildcard name). */
export function checkNamesAreSites(store: Store, tenant: Tenant, hostnames: readonly string[]): void {
  const own = new Set(store.listSites({ tenantId: tenant.id }).map((s) => s.hostname));
  for (const name of hostnames) {
    // The same words whether another tenant serves the name or nobody does: nothing about other tenants leaks.
    if (!own.has(name)) {
      throw new StrataError('STRATA_ERR_CERTIFICATE_NAME', `'${name}' is not a site of tenant '${tenant.name}'`, { hostname: name });
    }
  }
}

/**
 * Checks an uploaded chain and key: each block parses, the key loads and
 * matches the leaf, the leaf is valid now and names at least one DNS name.
 * Returns the leaf's names and the facts the store keeps.
 */
export function inspectUpload(certPem: string, keyPem: string): { hostnames: string[]; facts: CertificateIssued } {
  const blocks = splitPem(certPem);
  if (blocks.length === 0) throw invalid('no PEM certificate found');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
    for (const b of blocks.slice(1)) new X509Certificate(b);
  } catch {
    throw invalid('a certificate in the chain does not parse');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw invalid('the private key does not parse (PEM, unencrypted)');
  }
  if (!leaf.checkPrivateKey(key)) throw invalid('the private key does not match the certificate');
  const now = Date.now();
  if (Date.parse(leaf.validTo) <= now) throw invalid(`the certificate expired on ${new Date(leaf.validTo).toISOString()}`);
  if (Date.parse(leaf.validFrom) > now + 86_400_000) throw invalid('the certificate is not valid yet');
  const hostnames = [...new Set(dnsNames(leaf).map((n) => n.replace(/\.$/, '')))];
  if (hostnames.length === 0) throw invalid('the certificate names no DNS name (subjectAltName)');
  return { hostnames, facts: issuedFacts(blocks.join('')) };
}

export class CertificateFiles {
  /** Keys the process wrote or read, by certificate id, with the fingerprint they belong to. */
  readonly #keys = new Map<string, { fingerprint: string; keyPem: string }>();

  constructor(private readonly dataDir: string, private readonly store: Store, private readonly log?: Logger) {}

  dir(id: string): string {
    return join(this.dataDir, 'certs', id);
  }

  /**
   * Writes the file set of a certificate (key 0600) and remembers the key for
   * the gateway. A replaced key stays as `key.pem.prev` until the next
   * replacement: the store commits after this write, and a crash in between
   * leaves the old chain in the store, which that key still matches.
   */
  write(id: string, certPem: string, keyPem: string, fingerprint: string): void {
    const dir = this.dir(id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (existsSync(join(dir, 'key.pem'))) renameSync(join(dir, 'key.pem'), join(dir, 'key.pem.prev'));
    writeSecret(join(dir, 'key.pem'), keyPem);
    writeFileSync(join(dir, 'cert.pem'), certPem, { mode: 0o644 });
    this.#keys.set(id, { fingerprint, keyPem });
  }

  remove(id: string): void {
    this.#keys.delete(id);
    rmSync(this.dir(id), { recursive: true, force: true });
  }

  /** The key of an issued certificate: from memory, else the key file (or the previous one) that matches the chain; null otherwise. */
  private keyFor(c: Certificate): string | null {
    const known = this.#keys.get(c.id);
    if (known && known.fingerprint === c.fingerprint) return known.keyPem;
    if (c.certPem === null) return null;
    const leaf = new X509Certificate(splitPem(c.certPem)[0]!);
    for (const name of ['key.pem', 'key.pem.prev']) {
      const path = join(this.dir(c.id), name);
      if (!existsSync(path)) continue;
      const keyPem = readFileSync(path, 'utf8');
      try {
        if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) continue;
      } catch {
        continue;
      }
      this.#keys.set(c.id, { fingerprint: c.fingerprint!, keyPem });
      return keyPem;
    }
    return null;
  }

  /**
   * Every active certificate with its key, as the gateway takes them — each
   * for those of its names that are still its tenant's sites: a site deleted
   * (and perhaps taken by another tenant since) is never answered with the
   * old owner's certificate.
   */
  gatewayCertificates(): CertificateConfig[] {
    const owner = new Map(this.store.listSites().map((s) => [s.hostname, s.tenantId]));
    const out: CertificateConfig[] = [];
    for (const c of this.store.listCertificates()) {
      if (c.status === 'pending' || c.certPem === null) continue;
      const hostnames = c.hostnames.filter((h) => c.tenantId === null || owner.get(h) === c.tenantId);
      if (hostnames.length === 0) continue;
      const keyPem = this.keyFor(c);
      if (keyPem === null) {
        this.log?.warn({ certificate: c.id }, 'certificate key missing or not matching; not served');
        continue;
      }
      out.push({ id: c.id, hostnames, certPem: c.certPem, keyPem, tenantId: c.tenantId });
    }
    return out;
  }

  /** Removes file sets whose certificate is gone (a tenant deleted with its certificates). */
  sweepOrphans(): void {
    const root = join(this.dataDir, 'certs');
    if (!existsSync(root)) return;
    const known = new Set(this.store.listCertificates().map((c) => c.id));
    for (const id of readdirSync(root)) if (!known.has(id)) this.remove(id);
  }
}

