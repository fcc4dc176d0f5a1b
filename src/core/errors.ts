/**
 * Every error Strata reports on purpose is a `StrataError` with a stable code.
 *
 * The codes live in one table (`ERRORS`) so the API, the CLI and `docs/errors.md`
 * agree; a test keeps the doc in sync with this table. The API answers
 * `{"error": {"code", "message", "details"}}` with the code's HTTP status.
 * Anything that is not a StrataError is a bug and answers 500.
 */

export const ERRORS = {
  STRATA_ERR_VALIDATION: { status: 400, summary: 'The request does not match the schema; details name the field.' },
  STRATA_ERR_BAD_JSON: { status: 400, summary: 'The request body is not valid JSON.' },
  STRATA_ERR_UNAUTHENTICATED: { status: 401, summary: 'Missing, malformed, unknown or revoked bearer token.' },
  STRATA_ERR_FORBIDDEN: { status: 403, summary: 'The caller may not do this (never used to hide another tenant: that is a 404).' },
  STRATA_ERR_REASON_REQUIRED: { status: 403, summary: 'A provider-admin must give a `reason` to read or act inside a tenant instance.' },
  STRATA_ERR_NOT_FOUND: { status: 404, summary: 'No such object, or not visible to the caller.' },
  STRATA_ERR_ROUTE_NOT_FOUND: { status: 404, summary: 'No such API route.' },
  STRATA_ERR_METHOD_NOT_ALLOWED: { status: 405, summary: 'The route exists but not with this method.' },
  STRATA_ERR_CONFLICT: { status: 409, summary: 'The object already exists or was changed concurrently.' },
  STRATA_ERR_IDEMPOTENCY_MISMATCH: { status: 409, summary: 'The Idempotency-Key was used before with a different request.' },
  STRATA_ERR_INVALID_STATE_TRANSITION: { status: 409, summary: 'The lifecycle does not allow this action in the current state.' },
  STRATA_ERR_NOT_EMPTY: { status: 409, summary: 'The object still owns other objects; delete those first.' },
  STRATA_ERR_TARGET_NOT_EMPTY: { status: 409, summary: "A backup's directory or a restore's data dir exists and is not empty; details name it." },
  STRATA_ERR_HOSTNAME_NOT_YOURS: { status: 409, summary: 'The hostname is inside a domain another tenant holds; details name the domain.' },
  STRATA_ERR_HOSTNAME_OVERLAP: { status: 409, summary: "A wildcard would cover another tenant's site or domain, or the name lies under another tenant's wildcard; details name it." },
  STRATA_ERR_DOMAIN_TAKEN: { status: 409, summary: 'Another tenant holds this domain, one around it or one inside it.' },
  STRATA_ERR_DOMAIN_IN_USE: { status: 409, summary: 'Other tenants have sites in the domain or wildcards over it; details list them.' },
  STRATA_ERR_PRECONDITION_FAILED: { status: 412, summary: "If-Match does not name the object's current ETag: it changed since it was read; details carry the current one." },
  STRATA_ERR_QUOTA_EXCEEDED: { status: 422, summary: "The change would exceed the tenant's quota; details say which resource." },
  STRATA_ERR_PATH_ESCAPE: { status: 422, summary: 'A copied path leads outside the tree it is copied into or out of (`..`, an absolute name or symlink, a hard link to outside, a special file, a symlink on the way); details name the entry.' },
  STRATA_ERR_QUOTA_BELOW_USAGE: { status: 422, summary: 'The new quota is below what the tenant already uses.' },
  STRATA_ERR_LEVEL_UNAVAILABLE: { status: 422, summary: 'No driver for this isolation level is available on this machine.' },
  STRATA_ERR_UNSUPPORTED: { status: 422, summary: 'The driver for this level does not support the operation.' },
  STRATA_ERR_BACKUP_INVALID: { status: 422, summary: 'The backup does not check out against its manifest (a file altered, missing or not listed, or no manifest); details name the file.' },
  STRATA_ERR_CERTIFICATE_INVALID: { status: 422, summary: 'The certificate or key does not load, the key does not match, or the certificate has expired.' },
  STRATA_ERR_CERTIFICATE_NAME: { status: 422, summary: "A name on the certificate is not one of the tenant's configured sites." },
  STRATA_ERR_SITE_LISTENER: { status: 422, summary: 'A site names a gateway listener that does not exist, or one that cannot serve it (a static or redirect site on a tls-passthrough listener).' },
  STRATA_ERR_MOVE_TARGET: { status: 502, summary: 'The target daemon of a move refused or failed it (details carry its own error); the instance stays where it was.' },
  STRATA_ERR_ACME: { status: 502, summary: 'The ACME CA refused or failed the order; the message says why.' },
  STRATA_ERR_PAYLOAD_TOO_LARGE: { status: 413, summary: 'The request body is larger than the limit.' },
  STRATA_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'The request body must be application/json.' },
  STRATA_ERR_UPGRADE_REQUIRED: { status: 426, summary: 'The route speaks WebSocket only (exec, console): send an Upgrade: websocket request.' },
  STRATA_ERR_RATE_LIMITED: { status: 429, summary: 'Too many requests.' },
  STRATA_ERR_AUDIT_VERIFY_FAILED: { status: 500, summary: 'The audit log does not verify against its signed tree head.' },
  STRATA_ERR_DRIVER: { status: 500, summary: 'A level driver failed; the instance is marked failed.' },
  STRATA_ERR_CONFIG: { status: 400, summary: 'Invalid daemon or CLI configuration.' },
  STRATA_ERR_UNAVAILABLE: { status: 503, summary: 'The daemon is starting or shutting down.' },
  STRATA_ERR_GUARD_UNAVAILABLE: { status: 503, summary: 'A guard interceptor cannot run on this machine (a missing tool such as bpftrace, or a kernel feature such as tracefs or BTF).' },
  STRATA_ERR_INTERNAL: { status: 500, summary: 'A bug in Strata; the log has the stack.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) } };
  }
}

export const notFound = (kind: string, name: string): StrataError =>
  new StrataError('STRATA_ERR_NOT_FOUND', `${kind} '${name}' not found`, { kind, name });

export const conflict = (message: string, details?: Record<string, unknown>): StrataError =>
  new StrataError('STRATA_ERR_CONFLICT', message, details);

export class InvalidStateTransition extends StrataError {
  constructor(readonly from: string, readonly to: string, action?: string) {
    super(
      'STRATA_ERR_INVALID_STATE_TRANSITION',
      action ? `cannot ${action} an instance that is ${from}` : `cannot go from ${from} to ${to}`,
      { from, to, ...(action ? { action } : {}) },
    );
  }
}

export const isStrataError = (e: unknown): e is StrataError => e instanceof StrataError;

/** The message of anything thrown: an Error's message, anything else as a string. */
export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
