/**
 * A worker's certificates: which secure context answers a server name (exact
 * name first, then the longest wildcard, as routes do), with each context
 * built on first use and cached until the certificate changes.
 *
 * Each certificate's context has its own session ticket keys and session id
 * context, so a session issued for one certificate never resumes under
 * another (and so never under another tenant). The keys are derived from a
 * secret the supervisor draws at start, the certificate's id, tenant and PEM:
 * equal in every worker (resumption works whichever worker accepts), new when
 * the certificate is replaced. Like the route table, a store is never changed
 * in place: an update builds a new one and the worker swaps one reference.
 */
import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
import type { CertificateConfig } from './types.js';

/** Mozilla's "intermediate" TLS 1.2 suites (forward secret AEAD only); TLS 1.3 suites are OpenSSL's defaults. */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export class CertificateEntry {
  private context: SecureContext | null = null;

  constructor(readonly config: CertificateConfig, private readonly ticketSecret: string) {}

  /** The cached context; throws if the PEM cannot be loaded (validated earlier, so only on a broken install). */
  secureContext(): SecureContext {
    if (this.context !== null) return this.context;
    const c = this.config;
    const identity = createHash('sha256').update(`${c.id}\0${c.tenantId ?? ''}\0${c.certPem}`).digest();
    const context = createSecureContext({
      cert: c.certPem,
      key: c.keyPem,
      minVersion: 'TLSv1.2',
      ciphers: TLS12_CIPHERS,
      honorCipherOrder: false,
      // At most 32 bytes (SSL_MAX_SID_CTX_LENGTH): a session id cached for one certificate is refused by another.
      sessionIdContext: identity.toString('hex').slice(0, 32),
    });
    // 48 bytes: ticket key name, HMAC secret, AES key (node:tls setTicketKeys).
    (context.context as { setTicketKeys(keys: Buffer): void }).setTicketKeys(
      createHmac('sha512', Buffer.from(this.ticketSecret, 'hex')).update(identity).digest().subarray(0, 48));
    this.context = context;
    return context;
  }
}

/** Do two certificate configurations describe the same thing? */
export function sameCertificate(a: CertificateConfig, b: CertificateConfig): boolean {
  return a.id === b.id && a.tenantId === b.tenantId && a.certPem === b.certPem && a.keyPem === b.keyPem
    && a.hostnames.join(',') === b.hostnames.join(',');
}

export class CertificateStore {
  private constructor(
    readonly byId: ReadonlyMap<string, CertificateEntry>,
    private readonly exact: ReadonlyMap<string, CertificateEntry>,
    /** Keyed by the suffix with its leading dot: '*.example.com' → '.example.com'. */
    private readonly wildcard: ReadonlyMap<string, CertificateEntry>,
  ) {}

  static empty(): CertificateStore {
    return new CertificateStore(new Map(), new Map(), new Map());
  }

  /**
   * A store from `certificates`; entries whose configuration is unchanged
   * since `previous` keep their cached context.
   */
  static build(certificates: readonly CertificateConfig[], ticketSecret: string, previous: CertificateStore | null): CertificateStore {
    const byId = new Map<string, CertificateEntry>();
    const exact = new Map<string, CertificateEntry>();
    const wildcard = new Map<string, CertificateEntry>();
    for (const c of certificates) {
      const old = previous?.byId.get(c.id);
      const entry = old !== undefined && sameCertificate(old.config, c) ? old : new CertificateEntry(c, ticketSecret);
      byId.set(c.id, entry);
      for (const name of c.hostnames) {
        if (name.startsWith('*.')) wildcard.set(name.slice(1), entry);
        else exact.set(name, entry);
      }
    }
    return new CertificateStore(byId, exact, wildcard);
  }

  /** This store with `upsert` put in and the certificates with ids in `remove` taken out. */
  withChanges(upsert: readonly CertificateConfig[], remove: readonly string[], ticketSecret: string): CertificateStore {
    const next = new Map<string, CertificateConfig>();
    for (const [id, e] of this.byId) next.set(id, e.config);
    for (const id of remove) next.delete(id);
    for (const c of upsert) next.set(c.id, c);
    return CertificateStore.build([...next.values()], ticketSecret, this);
  }

  /** The certificate for a normalised server name: exact, then the longest wildcard; null when none. */
  lookup(name: string): CertificateEntry | null {
    const hit = this.exact.get(name);
    if (hit !== undefined) return hit;
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const w = this.wildcard.get(name.slice(dot));
      if (w !== undefined) return w;
    }
    return null;
  }
}

/**
 * Answers an ACME TLS-ALPN-01 validation (RFC 8737): a ClientHello that offers
 * only `acme-tls/1` gets the validation certificate the daemon's ACME client
 * wrote for its SNI name (`<dir>/<name>/tls-alpn-01.pem`), with that ALPN
 * protocol, and the connection ends after the handshake — it never reaches
 * routing. Without such a file (or `dir`) the connection is closed. Rare by
 * nature, so the file is read per connection rather than kept in a store.
 */
export function answerAcmeTlsAlpn(dir: string | null, socket: Socket, sni: string | null, hello: Buffer, done: () => void): void {
  const file = dir === null || sni === null || sni.startsWith('.') || sni.includes('..') ? null : join(dir, sni, 'tls-alpn-01.pem');
  void (file === null ? Promise.resolve(null) : readFile(file, 'utf8').catch(() => null)).then((pem) => {
    const cert = pem?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
    const key = pem?.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/)?.[0];
    if (cert === undefined || key === undefined || socket.destroyed) {
      done();
      socket.destroy();
      return;
    }
    socket.unshift(hello);
    const tls = new TLSSocket(socket, {
      isServer: true, secureContext: createSecureContext({ cert, key, minVersion: 'TLSv1.2' }), ALPNProtocols: ['acme-tls/1'],
    });
    tls.on('error', () => tls.destroy());
    tls.once('secure', () => {
      done();
      tls.end();
    });
  });
}
