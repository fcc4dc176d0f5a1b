/**
 * `strata image list` and `strata image import FILE`, through the API as every
 * command: `list` shows every level's images (built-in and imported, with
 * digest and size); `import` asks the daemon to import a file on the server
 * (provider-admin; the file is sent as its absolute path, the daemon runs on
 * this machine) into the store of the level it names, or of the API's default.
 */
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { LEVEL_IDS } from '../levels/ids.js';
import { clientFor, type Operation } from './client.js';
import { printPending } from './operation.js';
import { bytes, emit, table, when } from './output.js';

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

  image.command('import').argument('<file>', 'an OCI image layout directory, or a tarball of one (.tar, .tar.gz), on this machine')
    .requiredOption('--name <name>', 'the name instances use as their source')
    .addOption(new Option('--level <level>', 'the level whose image store receives it (default: the daemon\'s)').choices(LEVEL_IDS))
    .option('--no-wait', 'return at once with the operation')
    // Scripts written when a local import was the default still pass --api: it parses, and changes nothing.
    .addOption(new Option('--api').hideHelp())
    .description('import an OCI image through the daemon (provider-admin): every blob digest checked, layers applied with whiteouts')
    .action(async (file: string, o: { name: string; level?: string; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { name: o.name, path: resolve(file), ...(o.level ? { level: o.level } : {}) };
      const res = await c.request<{ operation: Operation }>('POST', '/v1/images', { body, idempotent: true });
      if (!o.wait && printPending(c.config.json, res)) return;
      const settled = await c.settle(res, o.wait);
      const result = (settled.operation as Operation & { result?: { image?: ImageRow } }).result?.image;
      emit(c.config.json, { ...settled, image: result ?? null }, () => `imported ${o.name}${result ? ` (${result.digest.slice(0, 12)}, ${bytes(result.sizeBytes)})` : ''}`);
    });

  image.command('list')
    .addOption(new Option('--level <level>', 'only this level\'s images').choices(LEVEL_IDS))
    .description('list the images: built-in and imported, with digest and size')
    .action(async (o: { level?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<{ items: ImageRow[] }>('/v1/images', o.level ? { level: o.level } : undefined), showImages);
    });
}
