/**
 * What one audit entry says, and the bytes it is hashed as.
 *
 * The leaf bytes are the entry's canonical JSON: object keys sorted by UTF-16
 * code unit, no whitespace, numbers and strings as `JSON.stringify` writes them —
 * the RFC 8785 (JCS) rules — so a tenant can re-encode an exported entry in any
 * language and get the same leaf hash.
 */

export interface AuditActor {
  /** null for Strata itself (bootstrap, the guard, the reconciler). */
  userId: string | null;
  name: string;
  role: string;
}

export interface AuditEntryInput {
  /** ISO 8601; defaults to the time of the append. */
  time?: string;
  actor: AuditActor;
  /** The tenant the action touched, null for installation-wide actions. Decides who can read and export it. */
  tenantId: string | null;
  /** e.g. "tenant.create", "instance.stop", "guard.freeze". */
  action: string;
  target: string;
  result: 'ok' | 'error';
  status?: number;
  /** Why a provider-admin acted inside a tenant (required there by policy). */
  reason?: string;
  details?: Record<string, unknown>;
}

export type AuditEntry = AuditEntryInput & { time: string };

/**
 * JSON with object keys sorted recursively and no whitespace. Follows
 * `JSON.stringify` for everything else (toJSON, undefined members dropped,
 * non-finite numbers as null) so any value the API would serialise is accepted.
 */
export function canonicalJson(value: unknown): string {
  const out = encode(value);
  if (out === undefined) throw new TypeError('canonicalJson: the value has no JSON form');
  return out;
}

function encode(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('canonicalJson: BigInt has no JSON form');
    case 'object': {
      if (v === null) return 'null';
      if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return encode((v as { toJSON(): unknown }).toJSON());
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) out += (i ? ',' : '') + (encode(v[i]) ?? 'null');
        return `${out}]`;
      }
      let out = '{';
      for (const key of Object.keys(v).sort()) {
        const member = encode((v as Record<string, unknown>)[key]);
        if (member !== undefined) out += `${out.length > 1 ? ',' : ''}${JSON.stringify(key)}:${member}`;
      }
      return `${out}}`;
    }
    default:
      return undefined;
  }
}

export const encodeEntry = (entry: AuditEntry): Buffer => Buffer.from(canonicalJson(entry), 'utf8');

export const decodeEntry = (data: Buffer): AuditEntry => JSON.parse(data.toString('utf8')) as AuditEntry;
