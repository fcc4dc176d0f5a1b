/**
 * `strata image list` and `strata image import FILE`.
 *
 * Through the API by default: `list` shows every level's images (built-in and
 * imported, with digest and size); `import --api` asks the daemon to import a file
 * on the server (provider-admin; the file is sent as its absolute path, the daemon
 * runs on this machine). With `--images-dir`, both act on an os image store on
 * this machine directly (run as root on the server), with a progress bar for the
 * import: the daemon reads the same store when it creates an instance.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ImageStore, treeSize } from '../levels/os/images.js';
import { importOciImage } from '../levels/os/oci-import.js';
import { clientFor, type Operation } from './client.js';
import { printPending } from './operation.js';
import { bytes, emit, spinner, table, when } from './output.js';

const DEFAULT_IMAGES_DIR = '/var/lib/strata/images';

interface ImageRow {
  name: string;
  level: string;
  source: string;
  builtin: boolean;
  digest: string;
  sizeBytes: number;
  createdAt: string;
}

const showImages = ({ items }: { items: ImageRow[] }): string =>
  table(['NAME', 'LEVEL', 'KIND', 'DIGEST', 'SIZE', 'CREATED'], items.map((m) => [
    m.name, m.level, m.builtin ? 'built-in' : 'imported', m.digest.slice(0, 12), bytes(m.sizeBytes), when(m.createdAt),
  ]));

export function registerImage(program: Command): void {
  const image = program.command('image').description('images instances are created from');

  image.command('import').argument('<file>', 'an OCI image layout directory, or a tarball of one (.tar, .tar.gz)')
    .requiredOption('--name <name>', 'the name instances use as their source')
    .option('--api', 'import through the daemon (provider-admin) instead of into a local store')
    .option('--no-wait', 'with --api: return at once with the operation')
    .option('--images-dir <dir>', 'the local os image store', DEFAULT_IMAGES_DIR)
    .description('import an OCI image: every blob digest checked, layers applied with whiteouts')
    .action(async (file: string, o: { name: string; api?: boolean; wait: boolean; imagesDir: string }, cmd: Command) => {
      if (o.api) {
        const c = clientFor(cmd);
        const res = await c.request<{ operation: Operation }>('POST', '/v1/images', { body: { name: o.name, path: resolve(file) }, idempotent: true });
        if (!o.wait && printPending(c.config.json, res)) return;
        const settled = await c.settle(res, o.wait);
        const result = (settled.operation as Operation & { result?: { image?: ImageRow } }).result?.image;
        emit(c.config.json, { ...settled, image: result ?? null }, () => `imported ${o.name}${result ? ` (${result.digest.slice(0, 12)}, ${bytes(result.sizeBytes)})` : ''}`);
        return;
      }
      const json = Boolean(cmd.optsWithGlobals().json);
      const progress = spinner(`importing ${file}`);
      let result: Awaited<ReturnType<typeof importOciImage>>;
      try {
        result = await importOciImage(new ImageStore(o.imagesDir), file, o.name, (p) =>
          progress.update(`importing ${file}: layer ${p.layer}/${p.layers} ${bar(p.doneBytes / Math.max(1, p.bytes))} ${bytes(p.doneBytes)}/${bytes(p.bytes)}`));
      } finally {
        progress.stop();
      }
      const { manifest, skipped } = result;
      emit(json, { ...manifest, files: Object.keys(manifest.files).length, skipped }, (m) =>
        `imported ${m.name} (${m.files} files, ${m.source})${skipped.length ? `; skipped ${skipped.length} device nodes/FIFOs` : ''}`);
    });

  image.command('list').option('--images-dir <dir>', 'list a local os image store instead of asking the daemon')
    .option('--level <level>', 'only this level\'s images')
    .description('list the images: built-in and imported, with digest and size')
    .action(async (o: { imagesDir?: string; level?: string }, cmd: Command) => {
      if (o.imagesDir) {
        const json = Boolean(cmd.optsWithGlobals().json);
        const store = new ImageStore(o.imagesDir);
        const items = await Promise.all((await store.list()).map(async (m): Promise<ImageRow> => ({
          name: m.name, level: 'os', source: m.source, builtin: m.source.startsWith('builtin:'), digest: m.digest,
          sizeBytes: await treeSize(`${store.dir}/${m.name}/rootfs`).catch(() => 0), createdAt: m.createdAt,
        })));
        emit(json, { items }, showImages);
        return;
      }
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<{ items: ImageRow[] }>('/v1/images', o.level ? { level: o.level } : undefined), showImages);
    });
}

/** A 20-character progress bar for a fraction 0..1. */
const bar = (fraction: number): string => {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * 20);
  return `[${'#'.repeat(filled)}${'.'.repeat(20 - filled)}]`;
};
