/**
 * `/v1/images`: the images instances are created from, at every level whose
 * driver has any (os: built-in and imported root filesystems), and import of an
 * image from a file on the server — a provider-admin's job, as the image store
 * is shared by all tenants.
 */
import { z } from 'zod';
import { authorize } from '../auth/policy.js';
import { StrataError, messageOf } from '../core/errors.js';
import { DEFAULT_LEVEL } from '../levels/index.js';
import { presentOperation } from './present.js';
import { defineRoute } from './route.js';
import { ErrorBody, Level, Operation, WaitQuery, list } from './schemas.js';

const tag = 'images';

const Image = z.object({
  name: z.string(),
  level: Level,
  source: z.string(),
  builtin: z.boolean(),
  digest: z.string(),
  sizeBytes: z.number().int().min(0),
  createdAt: z.string(),
});

const ImageImport = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lowercase letters, digits, ".", "_" and "-", at most 64'),
  /** An OCI image layout directory or a tarball of one, on the server (absolute path). */
  path: z.string().min(2).max(4096).startsWith('/'),
  level: Level.default(DEFAULT_LEVEL),
}).strict();

export const imageRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/images', tag, summary: 'Images of every level (built-in and imported), with digest and size',
    query: z.object({ level: Level.optional() }).strict(), responses: { 200: list(Image) },
    handler: async ({ p, query }, s) => {
      authorize(p, 'image.list');
      const drivers = s.registry.availableDrivers().filter((d) => d.listImages && (!query.level || d.level === query.level));
      const items = (await Promise.all(drivers.map((d) => d.listImages!()))).flat();
      return { body: { items } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/images', tag, summary: 'Import an image from a file on the server (provider-admin)',
    query: WaitQuery, body: ImageImport, auditAs: 'image.import', idempotent: true,
    responses: { 200: z.object({ operation: Operation }), 202: z.object({ operation: Operation }), 422: ErrorBody }, operation: {},
    handler: ({ p, body, audit }, s) => {
      authorize(p, 'image.import');
      const driver = s.registry.forLevel(body.level);
      if (!driver.importImage) throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${body.level} driver cannot import images`, { level: body.level, action: 'import' });
      const importImage = driver.importImage.bind(driver);
      audit({ action: 'image.import', target: body.name, tenantId: null, details: { path: body.path, level: body.level } });
      const operation = s.operations.start({ tenantId: null, kind: 'image.import', target: body.name }, async (progress) => {
        const done = (result: 'ok' | 'error', details: Record<string, unknown>) =>
          s.audit.append({ actor: { userId: p.userId, name: p.name, role: p.role }, tenantId: null, action: 'image.import.done', target: body.name, result, details });
        try {
          const image = await importImage(body.path, body.name, progress);
          done('ok', { digest: image.digest });
          return { image };
        } catch (e) {
          done('error', { error: messageOf(e) });
          throw e;
        }
      });
      return { status: 202, body: { operation: presentOperation(s, operation) } };
    },
  }),
];
