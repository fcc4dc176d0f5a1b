/**
 * The gateway's neutral default certificate: what an https listener presents
 * to a client that sends no SNI, or a name no certificate covers (scanners by
 * IP, old clients), unless the listener is `strictSni`. It names no tenant —
 * subject and SAN are `strata.invalid`, a name no site can hold a certificate
 * for (`.invalid` is reserved, RFC 2606, and the gateway never picks this
 * certificate by SNI: it is listed under no hostname) — so the answer to
 * someone who names no site reveals nothing about who is hosted here.
 *
 * Self-signed through a throwaway issuer (nobody is meant to trust it), made
 * once under `DATA/gateway/` (key 0600) and remade when it nears expiry, so
 * its fingerprint is stable across restarts.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSecret } from '../../core/secrets.js';
import type { CertificateConfig } from '../../gateway/types.js';
import { createCaCertificate, createLeafCertificate, newP256KeyPair, privateKeyPem } from './x509.js';

/** The id listeners name it by; store certificate ids are UUIDs, so this one never clashes. */
export const NEUTRAL_CERTIFICATE_ID = 'strata-neutral';
export const NEUTRAL_NAME = 'strata.invalid';
const VALID_DAYS = 2 * 365;
/** Remade at start once less than this is left. */
const REMAKE_BEFORE_MS = 30 * 86_400_000;

export async function neutralCertificate(dataDir: string): Promise<CertificateConfig> {
  const dir = join(dataDir, 'gateway');
  const certPath = join(dir, 'neutral.pem');
  const keyPath = join(dir, 'neutral-key.pem');
  let pair = existsSync(certPath) && existsSync(keyPath) ? { certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') } : null;
  if (pair !== null && !usable(pair.certPem)) pair = null;
  if (pair === null) {
    pair = await makeNeutral();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeSecret(keyPath, pair.keyPem);
    writeSecret(certPath, pair.certPem);
  }
  return { id: NEUTRAL_CERTIFICATE_ID, hostnames: [], tenantId: null, ...pair };
}

function usable(certPem: string): boolean {
  try {
    return Date.parse(new X509Certificate(certPem).validTo) - Date.now() > REMAKE_BEFORE_MS;
  } catch {
    return false; // unreadable: made anew
  }
}

async function makeNeutral(): Promise<{ certPem: string; keyPem: string }> {
  const issuerKeys = await newP256KeyPair();
  const issuer = { keys: issuerKeys, certPem: await createCaCertificate(issuerKeys, NEUTRAL_NAME, 3) };
  const keys = await newP256KeyPair();
  const certPem = await createLeafCertificate(issuer, keys.publicKey, [NEUTRAL_NAME], new Date(Date.now() + VALID_DAYS * 86_400_000));
  return { certPem, keyPem: await privateKeyPem(keys.privateKey) };
}
