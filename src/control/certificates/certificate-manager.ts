/**
 * Where certificates come from and how they stay valid: uploads, the local CA,
 * ACME orders (run as operations), and renewal — a timer that renews every
 * local-CA and ACME certificate once two thirds of its lifetime have passed
 * (Let's Encrypt's advice: 60 of 90 days). A renewal replaces the chain and key
 * under the same certificate id, so the gateway swaps it like any changed
 * certificate: open connections keep the one they were made with.
 *
 * Changes made outside an API call (orders finishing, renewals) are audited
 * as the system and announced on the event bus, which the front door follows.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AuditLog } from '../../audit/log.js';
import { StrataError } from '../../core/errors.js';
import type { Store } from '../../store/store.js';
import type { AcmeChallenge, Certificate, Operation, Tenant } from '../../store/types.js';
import { AcmeIssuer, type AcmeOptions } from './acme.js';
import { CertificateFiles, checkNamesAreSites, inspectUpload } from './certificates.js';
import type { EventBus } from '../../core/events.js';
import { LocalCa } from './local-ca.js';
import type { OperationRunner } from '../lifecycle/operations.js';
import { issuedFacts } from './x509.js';

export interface CertificateManagerOptions {
  dataDir: string;
  store: Store;
  audit: AuditLog;
  events: EventBus;
  operations: OperationRunner;
  log: Logger;
  /** ACME is off without a directory. */
  acme?: AcmeOptions;
  /** How often renewal looks for certificates that are due; default 1 h. */
  renewCheckMs?: number;
}

/** Renew once two thirds of the lifetime have passed. */
export function renewalDue(c: Pick<Certificate, 'notBefore' | 'notAfter'>, now: number): boolean {
  if (c.notBefore === null || c.notAfter === null) return false;
  const from = Date.parse(c.notBefore);
  return now >= from + ((Date.parse(c.notAfter) - from) * 2) / 3;
}

export class CertificateManager {
  readonly files: CertificateFiles;
  #localCa: Promise<LocalCa> | null = null;
  #acme: Promise<AcmeIssuer> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #renewing: Promise<void> = Promise.resolve();

  constructor(private readonly o: CertificateManagerOptions) {
    this.files = new CertificateFiles(o.dataDir, o.store, o.log);
  }

  get acmeEnabled(): boolean {
    return this.o.acme !== undefined;
  }

  start(): void {
    this.files.sweepOrphans();
    this.#timer = setInterval(() => void this.renewDue(), this.o.renewCheckMs ?? 3_600_000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#renewing;
  }

  localCa(): Promise<LocalCa> {
    this.#localCa ??= LocalCa.open(join(this.o.dataDir, 'ca'));
    return this.#localCa;
  }

  private acme(): Promise<AcmeIssuer> {
    if (!this.o.acme) throw new StrataError('STRATA_ERR_UNSUPPORTED', 'ACME is not configured on this daemon (strata up --acme-directory URL)');
    this.#acme ??= AcmeIssuer.open(this.o.acme, this.o.dataDir);
    return this.#acme;
  }

  /**
   * Names are claimed by one certificate each; a claim left by a tenant that
   * no longer has the site (the name is now this tenant's) is stale: that
   * certificate goes, audited, so the new owner is never locked out.
   */
  #releaseStale(tenant: Tenant, hostnames: readonly string[]): void {
    for (const name of hostnames) {
      const holder = this.o.store.getCertificateByName(name);
      if (!holder || holder.tenantId === tenant.id) continue;
      this.remove(holder);
      this.#auditSystem(holder, 'certificate.delete', 'ok', { why: `'${name}' is now another tenant's site` });
    }
  }

  /** An uploaded chain and key for names that are the tenant's sites. Call inside the API's transaction. */
  upload(tenant: Tenant, certPem: string, keyPem: string): Certificate {
    const { hostnames, facts } = inspectUpload(certPem, keyPem);
    checkNamesAreSites(this.o.store, tenant, hostnames);
    this.#releaseStale(tenant, hostnames);
    const cert = this.o.store.createCertificate({ tenantId: tenant.id, hostnames, source: 'upload', status: 'active', challenge: null, ...facts });
    this.files.write(cert.id, facts.certPem, keyPem, facts.fingerprint);
    return cert;
  }

  /** A local-CA leaf for the tenant's site names: the key is made first, the row in the caller's transaction. */
  async prepareLocal(tenant: Tenant, hostnames: string[]): Promise<(inTransaction: (c: Certificate) => void) => Certificate> {
    checkNamesAreSites(this.o.store, tenant, hostnames);
    const pair = await (await this.localCa()).issue(hostnames);
    const facts = issuedFacts(pair.certPem);
    return (inTransaction) => this.o.store.transaction(() => {
      checkNamesAreSites(this.o.store, tenant, hostnames);
      this.#releaseStale(tenant, hostnames);
      const cert = this.o.store.createCertificate({ tenantId: tenant.id, hostnames, source: 'local-ca', status: 'active', challenge: null, ...facts });
      this.files.write(cert.id, facts.certPem, pair.keyPem, facts.fingerprint);
      inTransaction(cert);
      return cert;
    });
  }

  /**
   * Claims the names for a pending ACME certificate (in the caller's
   * transaction) and starts the order as an operation. Names that are not the
   * tenant's sites are refused here, before the CA is contacted.
   */
  orderAcme(tenant: Tenant, hostnames: string[], challenge: AcmeChallenge): { certificate: Certificate; operation: Operation } {
    checkNamesAreSites(this.o.store, tenant, hostnames);
    const issuer = this.acme();
    this.#releaseStale(tenant, hostnames);
    const certificate = this.o.store.createCertificate({ tenantId: tenant.id, hostnames, source: 'acme', status: 'pending', challenge });
    const operation = this.o.operations.start({ tenantId: tenant.id, kind: 'certificate.acme', target: hostnames.join(',') }, async () => {
      try {
        await this.#acmeInto(certificate, await issuer, 'certificate.issue');
      } catch (e) {
        if (this.o.store.getCertificate(certificate.id)) {
          this.o.store.updateCertificate(certificate.id, { status: 'failed', error: (e as Error).message });
        }
        throw e;
      }
      return { certificate: certificate.id };
    });
    return { certificate, operation };
  }

  /** Runs an ACME order and stores its result under `c`'s id. */
  async #acmeInto(c: Certificate, issuer: AcmeIssuer, action: string): Promise<void> {
    const pair = await issuer.issue(c.hostnames, c.challenge ?? 'http-01');
    const facts = issuedFacts(pair.certPem);
    this.o.store.transaction(() => {
      if (!this.o.store.getCertificate(c.id)) return; // deleted while the order ran
      this.files.write(c.id, facts.certPem, pair.keyPem, facts.fingerprint);
      this.o.store.updateCertificate(c.id, facts);
      this.#auditSystem(c, action, 'ok', { notAfter: facts.notAfter, fingerprint: facts.fingerprint });
    });
  }

  remove(c: Certificate): void {
    this.o.store.deleteCertificate(c.id);
    this.files.remove(c.id);
  }

  /**
   * Renews every local-CA and ACME certificate past two thirds of its life
   * (at `now`), one at a time; a failure is audited and retried next round,
   * while the old certificate keeps serving.
   */
  renewDue(now = Date.now()): Promise<void> {
    this.#renewing = this.#renewing.then(async () => {
      for (const c of this.o.store.listCertificates()) {
        if (c.status !== 'active' || c.source === 'upload' || !renewalDue(c, now)) continue;
        try {
          // Only names that are still the tenant's sites are ever renewed (ACME or not).
          const tenant = c.tenantId === null ? null : this.o.store.getTenant(c.tenantId);
          if (tenant) checkNamesAreSites(this.o.store, tenant, c.hostnames);
          if (c.source === 'acme') await this.#acmeInto(c, await this.acme(), 'certificate.renew');
          else await this.#renewLocal(c);
        } catch (e) {
          this.o.log.warn({ certificate: c.id, err: (e as Error).message }, 'certificate renewal failed');
          this.o.store.updateCertificate(c.id, { error: (e as Error).message });
          this.#auditSystem(c, 'certificate.renew', 'error', { error: (e as Error).message });
        }
      }
    });
    return this.#renewing;
  }

  async #renewLocal(c: Certificate): Promise<void> {
    const pair = await (await this.localCa()).issue(c.hostnames);
    const facts = issuedFacts(pair.certPem);
    this.o.store.transaction(() => {
      this.files.write(c.id, facts.certPem, pair.keyPem, facts.fingerprint);
      this.o.store.updateCertificate(c.id, facts);
      this.#auditSystem(c, 'certificate.renew', 'ok', { notAfter: facts.notAfter, fingerprint: facts.fingerprint });
    });
  }

  #auditSystem(c: Certificate, action: string, result: 'ok' | 'error', details: Record<string, unknown>): void {
    const target = c.hostnames.join(',');
    this.o.audit.append({
      actor: { userId: null, name: 'strata', role: 'system' }, tenantId: c.tenantId, action, target, result,
      details: { certificate: c.id, source: c.source, ...details },
    });
    this.o.events.publish('audit', 'audit.appended', c.tenantId, { action, target, actor: 'strata', result });
  }
}
