/**
 * Bearer-token authentication. Every failure is the same 401, whatever the cause
 * (malformed, unknown, wrong secret, expired), so a caller learns nothing from it.
 */
import type { FastifyRequest } from 'fastify';
import { StrataError } from '../core/errors.js';
import type { Store } from '../store/store.js';
import type { Principal } from './policy.js';
import { parseBearer, secretMatches } from './tokens.js';

const unauthenticated = (): StrataError =>
  new StrataError('STRATA_ERR_UNAUTHENTICATED', 'missing or invalid bearer token');

const MAX_REASON = 500;

export class Authenticator {
  /** last_used_at is written at most once a minute per token, to keep reads cheap. */
  readonly #touched = new Map<string, number>();

  constructor(private readonly store: Store) {}

  authenticate(req: FastifyRequest): Principal {
    const header = req.headers.authorization;
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) throw unauthenticated();
    const parsed = parseBearer(header.slice('Bearer '.length).trim());
    if (!parsed) throw unauthenticated();
    const found = this.store.getTokenForAuth(parsed.id);
    if (!found || !secretMatches(parsed.secret, found.secretHash)) throw unauthenticated();
    if (found.token.expiresAt && Date.parse(found.token.expiresAt) <= Date.now()) throw unauthenticated();
    const user = this.store.getUser(found.token.userId);
    if (!user) throw unauthenticated();
    this.#touch(found.token.id);
    const reasonHeader = req.headers['x-strata-reason'];
    const reason = typeof reasonHeader === 'string' && reasonHeader.trim() ? reasonHeader.trim().slice(0, MAX_REASON) : null;
    const p: Principal = { userId: user.id, name: user.name, role: user.role, tenantId: user.tenantId, tokenId: found.token.id, reason };
    req.strataPrincipal = p;
    return p;
  }

  #touch(id: string): void {
    const now = Date.now();
    if ((this.#touched.get(id) ?? 0) > now - 60_000) return;
    this.#touched.set(id, now);
    this.store.touchToken(id, new Date(now).toISOString());
  }
}
