/**
 * Optimistic concurrency for changeable objects (tenants, users, instances,
 * sites): each row has a revision that every change of what a user may change
 * bumps, and its `ETag` is `"<id>.<revision>"` — the id keeps a tag from
 * matching a later object of the same name. A change sent with `If-Match` is
 * refused (412) unless the tag still names the object as it is; a change
 * without one is applied whatever happened meanwhile (last writer wins).
 */
import { StrataError } from './errors.js';

export interface Revised {
  id: string;
  revision: number;
}

/** The object's entity tag, quoted as HTTP sends it. */
export const etagOf = (o: Revised): string => `"${o.id}.${o.revision}"`;

/**
 * Whether an `If-Match` header value matches `o`: `*`, or one of a
 * comma-separated list of strong tags (RFC 9110 §13.1.1: a weak tag never matches).
 */
export function ifMatchHolds(header: string, o: Revised): boolean {
  const tags = header.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
  return tags.some((t) => t === '*' || t === etagOf(o));
}

/** Throws STRATA_ERR_PRECONDITION_FAILED when `ifMatch` is given and does not name `o` as it is now. */
export function checkIfMatch(ifMatch: string | undefined, o: Revised, what: string): void {
  if (ifMatch === undefined || ifMatchHolds(ifMatch, o)) return;
  throw new StrataError('STRATA_ERR_PRECONDITION_FAILED', `${what} was changed since it was read (If-Match ${ifMatch}, now ${etagOf(o)})`, {
    ifMatch, etag: etagOf(o),
  });
}
