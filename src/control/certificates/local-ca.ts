/**
 * The local CA, for development: a P-256 CA key and certificate made once under
 * `DATA/ca/` (key 0600), issuing short-lived P-256 leaves for a tenant's site
 * names. Clients trust it by importing `ca.pem` (`strata cert ca`); nothing
 * else does, so it is never a substitute for ACME on a public name.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeSecret } from '../../core/secrets.js';
import { createCaCertificate, createLeafCertificate, importP256, newP256KeyPair, privateKeyPem } from './x509.js';

/** Leaves live 30 days, so the renewal path runs in development too. */
export const LOCAL_CA_LEAF_DAYS = 30;
const CA_YEARS = 10;

export interface IssuedPair {
  /** Leaf then the CA certificate. */
  certPem: string;
  keyPem: string;
}

export class LocalCa {
  private constructor(private readonly keys: CryptoKeyPair, readonly certPem: string) {}

  /** Loads the CA from `dir`, creating it on first use. */
  static async open(dir: string): Promise<LocalCa> {
    const keyPath = join(dir, 'ca-key.pem');
    const certPath = join(dir, 'ca.pem');
    if (!existsSync(keyPath) || !existsSync(certPath)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const keys = await newP256KeyPair();
      const certPem = await createCaCertificate(keys, `Strata local CA ${randomBytes(4).toString('hex')}`, CA_YEARS);
      writeSecret(keyPath, await privateKeyPem(keys.privateKey));
      writeFileSync(certPath, certPem, { mode: 0o644 });
      return new LocalCa(keys, certPem);
    }
    return new LocalCa(await importP256(readFileSync(keyPath, 'utf8')), readFileSync(certPath, 'utf8'));
  }

  /** A fresh key and a leaf for `hostnames`, valid for `days`. */
  async issue(hostnames: readonly string[], days = LOCAL_CA_LEAF_DAYS): Promise<IssuedPair> {
    const leafKeys = await newP256KeyPair();
    const leaf = await createLeafCertificate({ keys: this.keys, certPem: this.certPem }, leafKeys.publicKey, hostnames,
      new Date(Date.now() + days * 86_400_000));
    return { certPem: `${leaf}${this.certPem}`, keyPem: await privateKeyPem(leafKeys.privateKey) };
  }
}
