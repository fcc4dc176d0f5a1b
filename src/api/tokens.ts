/** `/v1/tokens`: bearer tokens. The secret is shown once, in the create response. */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { generateToken } from '../auth/tokens.js';
import { notFound } from '../core/errors.js';
import { presentToken } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Token, TokenCreate, TokenCreated, UserName, list } from './schemas.js';
import { managesUser, userFor } from './users.js';

const tag = 'tokens';

export const tokenRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/tokens', tag, summary: 'Create a token for yourself or a user you manage',
    body: TokenCreate, idempotent: true, auditAs: 'token.create', responses: { 201: TokenCreated, 404: ErrorBody },
    handler: ({ p, body, audit }, s) => {
      authorize(p, 'token.create');
      const user = body.user ? userFor(s, p, body.user) : s.store.getUser(p.userId)!;
      const fresh = generateToken();
      return s.store.transaction(() => {
        const expiresAt = body.expiresInDays ? new Date(Date.now() + body.expiresInDays * 86_400_000).toISOString() : null;
        const token = s.store.createToken({ id: fresh.id, userId: user.id, name: body.name, secretHash: fresh.secretHash, expiresAt });
        audit({ action: 'token.create', target: `${user.name}/${token.id}`, tenantId: user.tenantId });
        return { status: 201, body: { token: presentToken(s, token), secret: fresh.bearer } };
      });
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tokens', tag, summary: 'List tokens (yours, or those of a user you manage)',
    query: z.object({ user: UserName.optional() }).strict(), responses: { 200: list(Token) },
    handler: ({ p, query }, s) => {
      authorize(p, 'token.list');
      const user = query.user ? userFor(s, p, query.user) : s.store.getUser(p.userId)!;
      return { body: { items: s.store.listTokens({ userId: user.id }).map((t) => presentToken(s, t)) } };
    },
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tokens/:id', tag, summary: 'Revoke a token', auditAs: 'token.delete',
    params: z.object({ id: z.string().regex(/^tk[0-9a-f]{16}$/, 'a token id: tk + 16 hex digits') }).strict(),
    responses: { 204: null, 404: ErrorBody },
    handler: ({ p, params, audit }, s) => {
      authorize(p, 'token.delete');
      const token = s.store.getToken(params.id);
      const owner = token ? s.store.getUser(token.userId) : null;
      if (!token || !owner || !managesUser(p, owner)) throw notFound('token', params.id);
      s.store.transaction(() => {
        s.store.deleteToken(token.id);
        audit({ action: 'token.delete', target: `${owner.name}/${token.id}`, tenantId: owner.tenantId });
      });
      return { status: 204, body: null };
    },
  }),
];
