/**
 * ACME HTTP-01 answers on http listeners: `GET /.well-known/acme-challenge/<token>`
 * for Host `<name>` is answered from `<acmeChallengeDir>/<name>/http-01/<token>`
 * when the daemon's ACME client has written that file (an order for one of the
 * name's own certificates is running); otherwise the request goes to the site as
 * usual, so a tenant running its own ACME client behind the gateway still can.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WorkerContext } from './context.js';
import type { Exchange } from './exchange.js';
import type { Responder } from './responder.js';

const PREFIX = '/.well-known/acme-challenge/';
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/** Cheap enough for every request: one null check, then a prefix test. */
export const isAcmeHttp01 = (ctx: WorkerContext, ex: Exchange): boolean =>
  ctx.opts.acmeChallengeDir !== null && ex.target.startsWith(PREFIX) && (ex.method === 'GET' || ex.method === 'HEAD')
  && ex.reject === 0 && ex.host !== null && !ex.host.isIp;

/** Answers from the challenge file, or calls `otherwise` (the normal dispatch) when there is none for this name and token. */
export function answerAcmeHttp01(ctx: WorkerContext, r: Responder, ex: Exchange, otherwise: () => void): void {
  const token = ex.target.slice(PREFIX.length);
  const name = ex.host!.name;
  if (!TOKEN.test(token) || name.startsWith('.') || name.includes('..')) {
    otherwise();
    return;
  }
  readFile(join(ctx.opts.acmeChallengeDir!, name, 'http-01', token)).then(
    (body) => r.respondLocal(ex, 200, 'Content-Type: application/octet-stream\r\nCache-Control: no-store\r\n', body),
    () => otherwise(),
  );
}
