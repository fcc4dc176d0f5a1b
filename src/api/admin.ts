/**
 * `/v1/admin/backups`: an online backup of the daemon's state (the store, the
 * audit log, keys, certificates, docroots, the checksum DB) into a directory on
 * the server, for `strata admin restore` to put onto a new data dir; the copy
 * runs as an operation (`?wait=` to wait for it), audited when asked and when done. The
 * provider's alone: a backup holds every key the daemon has. Instances' own
 * state is not in it (`control/backup/layout.ts`).
 */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { StrataError, messageOf } from '../core/errors.js';
import { presentOperation } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Operation, WaitQuery } from './schemas.js';

const BackupCreate = z.object({
  /** Absolute, on the server; missing or empty; outside the data dir. */
  dir: z.string().min(1).max(4096),
}).strict();

/** What a finished backup operation's `result.backup` holds. */
export const Backup = z.object({
  dir: z.string(),
  consistentAt: z.string(),
  files: z.number(),
  bytes: z.number(),
  audit: z.object({ size: z.number(), signedSize: z.number(), heads: z.number() }),
  skipped: z.array(z.object({ path: z.string(), why: z.string() })),
});

export const adminRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/admin/backups', tag: 'admin', auditAs: 'backup.create',
    summary: "Back up the daemon's state into an empty directory on the server while it serves (an operation; its result.backup says what was written)",
    query: WaitQuery, body: BackupCreate, operation: {},
    responses: { 200: z.object({ operation: Operation }), 202: z.object({ operation: Operation }), 409: ErrorBody },
    handler: ({ p, body, audit }, s) => {
      authorize(p, 'backup.create');
      if (!s.backups) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'this daemon takes no backups');
      // The target is checked and the one backup slot taken here: refusals answer at once, not as a failed operation.
      const copy = s.backups.begin(body.dir);
      audit({ action: 'backup.create', target: body.dir, tenantId: null });
      const operation = s.operations.start({ tenantId: null, kind: 'backup.create', target: body.dir }, async (progress) => {
        const done = (result: 'ok' | 'error', details: Record<string, unknown>): void => {
          s.audit.append({ actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: null, action: 'backup.create.done', target: body.dir, result, details });
        };
        try {
          const backup = await copy(progress);
          done('ok', { consistentAt: backup.consistentAt, files: backup.files, bytes: backup.bytes });
          return { backup };
        } catch (e) {
          done('error', { error: messageOf(e) });
          throw e;
        }
      });
      return { status: 202, body: { operation: presentOperation(s, operation) } };
    },
  }),
];
