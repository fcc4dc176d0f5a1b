/**
 * `strata image import FILE` and `strata image list`: the os level's image store
 * on this machine. These act on the local store directly (run as root on the
 * server), not through the API: the daemon reads the same store when it creates
 * an instance. Register with `registerImage(program)`.
 */
import type { Command } from 'commander';
import { ImageStore } from '../levels/os/images.js';
import { importOciImage } from '../levels/os/oci-import.js';
import { bytes, emit, spinner, table, when } from './output.js';

const DEFAULT_IMAGES_DIR = '/var/lib/strata/images';

export function registerImage(program: Command): void {
  const image = program.command('image').description('container images of the os level (local store)');

  image.command('import').argument('<file>', 'an OCI image layout directory, or a tarball of one (.tar, .tar.gz)')
    .requiredOption('--name <name>', 'the name instances use as their source')
    .option('--images-dir <dir>', 'the image store', DEFAULT_IMAGES_DIR)
    .description('import an OCI image: every blob digest checked, layers applied with whiteouts')
    .action(async (file: string, o: { name: string; imagesDir: string }, cmd: Command) => {
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

  image.command('list').option('--images-dir <dir>', 'the image store', DEFAULT_IMAGES_DIR)
    .description('list the images in the store')
    .action(async (o: { imagesDir: string }, cmd: Command) => {
      const json = Boolean(cmd.optsWithGlobals().json);
      const manifests = await new ImageStore(o.imagesDir).list();
      emit(json, { items: manifests.map(({ files, ...m }) => ({ ...m, files: Object.keys(files).length })) }, ({ items }) =>
        table(['NAME', 'SOURCE', 'FILES', 'PORT', 'CREATED'], items.map((m) => [m.name, m.source.split(' ')[0], m.files, m.config.port ?? '-', when(m.createdAt)])));
    });
}

/** A 20-character progress bar for a fraction 0..1. */
const bar = (fraction: number): string => {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * 20);
  return `[${'#'.repeat(filled)}${'.'.repeat(20 - filled)}]`;
};
