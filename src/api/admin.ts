/**
 * `/v1/admin/backups`: an online backup of the daemon's state (the store, the
 * audit log, keys, certificates, docroots, the checksum DB) into a directory on
 * the server, for `strata admin restore` to put onto a new data dir. The
 * provider's alone: a backup holds every key the daemon has. Instances' own
 * state is not in it (`control/backup/layout.ts`).
 */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { StrataError } from '../core/errors.js';
import { defineRoute } from './route.js';
import { ErrorBody } from './schemas.js';

const BackupCreate = z.object({
  /** Absolute, on the server; missing or empty; outside the data dir. */
  dir: z.string().min(1).max(4096),
}).strict();

const Backup = z.object({
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
    summary: 'Back up the daemon\'s state into an empty directory on the server while it serves; answers once the manifest is written',
    body: BackupCreate,
    responses: { 201: Backup, 409: ErrorBody },
    handler: async ({ p, body, audit }, s) => {
      authorize(p, 'backup.create');
      if (!s.backups) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'this daemon takes no backups');
      const report = await s.backups.create(body.dir);
      audit({ action: 'backup.create', target: report.dir, tenantId: null, details: { consistentAt: report.consistentAt, files: report.files, bytes: report.bytes } });
      return { status: 201, body: report };
    },
  }),
];
