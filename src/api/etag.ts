/** ETag and If-Match on the API's changeable objects (see core/revision.ts for what the tag is). */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { etagOf, type Revised } from '../core/revision.js';

/** Sets the object's ETag on the reply; returns the object. */
export function withEtag<T extends Revised>(reply: FastifyReply, o: T): T {
  reply.header('etag', etagOf(o));
  return o;
}

/** The request's If-Match header, if it sent one. */
export function ifMatchOf(req: FastifyRequest): string | undefined {
  const h = req.headers['if-match'];
  return Array.isArray(h) ? h.join(', ') : h;
}
