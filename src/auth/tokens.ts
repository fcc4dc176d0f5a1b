/**
 * API tokens: `strata_<id>_<secret>`.
 *
 * The `strata_` prefix makes a leaked token recognisable to secret scanners; the id
 * finds the row without scanning; only SHA-256 of the secret is stored (the secret
 * is 256 random bits, so a slow hash adds nothing) and it is shown once, at creation.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIX = 'strata_';
const ID_PATTERN = /^tk[0-9a-f]{16}$/;

export interface NewTokenSecret {
  id: string;
  secret: string;
  secretHash: string;
  /** The full bearer string handed to the user once. */
  bearer: string;
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex');

export function generateToken(): NewTokenSecret {
  const id = `tk${randomBytes(8).toString('hex')}`;
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, secretHash: hashSecret(secret), bearer: `${TOKEN_PREFIX}${id}_${secret}` };
}

/** Splits a bearer string into id and secret, or null when it is not one of ours. */
export function parseBearer(bearer: string): { id: string; secret: string } | null {
  if (!bearer.startsWith(TOKEN_PREFIX)) return null;
  const rest = bearer.slice(TOKEN_PREFIX.length);
  const cut = rest.indexOf('_');
  if (cut < 0) return null;
  const id = rest.slice(0, cut);
  const secret = rest.slice(cut + 1);
  if (!ID_PATTERN.test(id) || secret.length < 32 || secret.length > 64) return null;
  return { id, secret };
}

/** Constant-time comparison of a presented secret with the stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
