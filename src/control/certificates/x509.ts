/**
 * X.509 for Strata's own certificates: ECDSA P-256 keys and certificates made
 * with @peculiar/x509 over Node's WebCrypto (no openssl shell-outs), and the
 * facts the store keeps about any certificate (names, validity, fingerprint),
 * read with node:crypto.
 */
import { X509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import type { CertificateIssued } from '../../store/types.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const subtle = webcrypto.subtle as unknown as SubtleCrypto;
export const P256: EcKeyImportParams & EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

export const newP256KeyPair = (): Promise<CryptoKeyPair> =>
  subtle.generateKey(P256, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
}

/** A P-256 key pair from its PKCS#8 PEM (the public half is derived by WebCrypto via JWK). */
export async function importP256(pem: string): Promise<CryptoKeyPair> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const privateKey = await subtle.importKey('pkcs8', der, P256, true, ['sign']);
  const jwk = await subtle.exportKey('jwk', privateKey);
  const publicKey = await subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, ext: true }, P256, true, ['verify']);
  return { privateKey, publicKey };
}

/** A self-signed CA certificate that may sign leaves only (path length 0). */
export async function createCaCertificate(keys: CryptoKeyPair, commonName: string, years: number): Promise<string> {
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(), name: `CN=${commonName}`, notBefore,
    notAfter: new Date(notBefore.getTime() + years * 365 * 86_400_000), keys, signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return `${cert.toString('pem')}\n`;
}

/** A TLS server leaf for `hostnames` (IP literals become IP entries), signed by the CA. */
export async function createLeafCertificate(
  ca: { keys: CryptoKeyPair; certPem: string }, publicKey: CryptoKey, hostnames: readonly string[], notAfter: Date,
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(), subject: `CN=${hostnames[0]}`, issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000), notAfter, publicKey, signingKey: ca.keys.privateKey, signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hostnames.map((value) => ({ type: isIP(value) ? 'ip' as const : 'dns' as const, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return `${cert.toString('pem')}\n`;
}

/** 16 random bytes, positive (RFC 5280 §4.1.2.2). */
function randomSerial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f | 0x01;
  return Buffer.from(b).toString('hex');
}

/** The PEM blocks of a chain, in order. */
export const splitPem = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((b) => `${b}\n`) ?? [];

/** The DNS names of a certificate's subjectAltName, lower-cased. */
export function dnsNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  return san.split(/,\s*/).filter((e) => e.startsWith('DNS:')).map((e) => e.slice(4).toLowerCase());
}

/** What the store records of a chain whose first block is the leaf. */
export function issuedFacts(chainPem: string): CertificateIssued {
  const leaf = new X509Certificate(splitPem(chainPem)[0] ?? chainPem);
  return {
    certPem: chainPem,
    fingerprint: leaf.fingerprint256,
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
  };
}
