/**
 * ACME (RFC 8555) through acme-client: one account per daemon (its key in
 * `DATA/acme/account-key.pem`, 0600), orders for a tenant's site names, proven
 * by HTTP-01 or TLS-ALPN-01 (RFC 8737) through the gateway itself.
 *
 * The gateway answers challenges from files this module writes under
 * `DATA/acme/challenges/<name>/` (see `acmeChallengeDir` in the gateway
 * options): `http-01/<token>` holds the key authorization, served at
 * `/.well-known/acme-challenge/<token>` on http listeners for that name only;
 * `tls-alpn-01.pem` holds the validation certificate and its key (0600),
 * presented to a ClientHello that offers only `acme-tls/1` on https listeners.
 * Files are removed when the order is done, whatever its outcome.
 */
import { Agent } from 'node:https';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as acme from 'acme-client';
import { writeSecret } from '../../core/secrets.js';
import { StrataError } from '../../core/errors.js';
import type { AcmeChallenge } from '../../store/types.js';

export interface AcmeOptions {
  /** The CA's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  directoryUrl: string;
  /** PEM of the CA that signs the directory's TLS certificate, when it is not a public one (pebble's test CA). */
  directoryCaPem?: string;
  /** Contact address registered with the account. */
  email?: string;
}

/** A base64url ACME token: the only thing ever used as a file name here. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export const challengeDir = (dataDir: string): string => join(dataDir, 'acme', 'challenges');

export class AcmeIssuer {
  readonly #client: acme.Client;
  readonly #challenges: string;

  private constructor(private readonly opts: AcmeOptions, accountKey: string, dataDir: string) {
    this.#client = new acme.Client({ directoryUrl: opts.directoryUrl, accountKey, backoffAttempts: 20, backoffMin: 100, backoffMax: 2_000 });
    this.#challenges = challengeDir(dataDir);
  }

  static async open(opts: AcmeOptions, dataDir: string): Promise<AcmeIssuer> {
    const dir = join(dataDir, 'acme');
    mkdirSync(challengeDir(dataDir), { recursive: true, mode: 0o755 });
    const keyPath = join(dir, 'account-key.pem');
    if (!existsSync(keyPath)) writeSecret(keyPath, (await acme.crypto.createPrivateEcdsaKey('P-256')).toString());
    // acme-client talks through its own axios instance; trusting a private directory CA is set there.
    if (opts.directoryCaPem) acme.axios.defaults.httpsAgent = new Agent({ ca: opts.directoryCaPem });
    return new AcmeIssuer(opts, readFileSync(keyPath, 'utf8'), dataDir);
  }

  /** Orders a certificate for `hostnames` (already checked to be the tenant's sites); a fresh P-256 key each time. */
  async issue(hostnames: readonly string[], challenge: AcmeChallenge): Promise<{ certPem: string; keyPem: string }> {
    const keyPem = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    const [, csr] = await acme.crypto.createCsr({ commonName: hostnames[0]!, altNames: [...hostnames] }, keyPem);
    const written: string[] = [];
    try {
      const certPem = await this.#client.auto({
        csr, email: this.opts.email, termsOfServiceAgreed: true, challengePriority: [challenge],
        // The CA validates through the gateway; a self-check from here would test the resolver of this host, not the CA's view.
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, ch, keyAuthorization) => {
          written.push(await this.#present(authz, ch, keyAuthorization));
        },
        challengeRemoveFn: async () => {},
      });
      return { certPem, keyPem };
    } catch (e) {
      if (e instanceof StrataError) throw e;
      throw new StrataError('STRATA_ERR_ACME', `ACME order for ${hostnames.join(', ')} failed: ${(e as Error).message}`, { hostnames });
    } finally {
      for (const f of written) rmSync(f, { force: true });
    }
  }

  /** Writes what the gateway shows the CA for one authorization; returns the file to remove afterwards. */
  async #present(authz: acme.Authorization, ch: { type: string; token: string }, keyAuthorization: string): Promise<string> {
    const name = authz.identifier.value.toLowerCase();
    if (!TOKEN.test(ch.token) || name.includes('/') || name.startsWith('.')) {
      throw new StrataError('STRATA_ERR_ACME', 'the CA sent a malformed challenge');
    }
    const dir = join(this.#challenges, name);
    if (ch.type === 'http-01') {
      mkdirSync(join(dir, 'http-01'), { recursive: true, mode: 0o755 });
      const file = join(dir, 'http-01', ch.token);
      writeFileSync(file, keyAuthorization, { mode: 0o644 });
      return file;
    }
    if (ch.type === 'tls-alpn-01') {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
      const file = join(dir, 'tls-alpn-01.pem');
      writeSecret(file, `${cert.toString()}${key.toString()}`);
      return file;
    }
    throw new StrataError('STRATA_ERR_ACME', `challenge type ${ch.type} is not supported`);
  }
}
