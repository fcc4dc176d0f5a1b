/**
 * `strata admin`: the provider's care of the daemon itself — backups through
 * the API, a restore onto a new data dir (offline: no daemon runs there yet),
 * and the systemd unit that runs `strata up` at boot.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { clientFor, type Operation } from './client.js';
import { DEFAULT_DATA_DIR } from './config.js';
import { bytes, emit, keyValues } from './output.js';
import { registerInstallService } from './service.js';

interface BackupAnswer {
  dir: string;
  consistentAt: string;
  files: number;
  bytes: number;
  audit: { size: number; signedSize: number; heads: number };
  skipped: Array<{ path: string; why: string }>;
}

export function registerAdmin(program: Command): void {
  const admin = program.command('admin').description("the daemon's own care: backups, restore, the systemd service");

  admin.command('backup').argument('<dir>', 'an empty or missing directory on the server, outside the data dir')
    .description("back up the running daemon's state (store, audit log, keys, certificates, docroots, checksum DB) into DIR on the server")
    .action(async (dir: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const { operation } = await c.request<{ operation: Operation }>('POST', '/v1/admin/backups', { body: { dir: resolve(dir) } });
      const finished = await c.waitFor(operation, `backing up into ${resolve(dir)}`);
      const res = (finished.result as { backup: BackupAnswer }).backup;
      emit(c.config.json, res, (b) => [
        keyValues([
          ['backup', b.dir], ['consistent at', b.consistentAt], ['files', `${b.files} (${bytes(b.bytes)})`],
          ['audit log', `${b.audit.size} entries, verified (${b.audit.signedSize} under a signed head)`],
        ]),
        'Not in the backup:',
        ...b.skipped.map((s) => `  ${s.path}: ${s.why}`),
      ].join('\n'));
    });

  admin.command('restore').argument('<dir>', 'a backup made by `strata admin backup`')
    .description('restore a backup onto a new, empty data dir (checks every file against the manifest first); then start `strata up --data-dir` there')
    .option('--data-dir <dir>', 'the new data dir: missing or empty', DEFAULT_DATA_DIR)
    .action(async (dir: string, o: { dataDir: string }, cmd: Command) => {
      const json = Boolean(cmd.optsWithGlobals<{ json?: boolean }>().json);
      const { restoreBackup } = await import('../control/backup/restore.js');
      const r = await restoreBackup(resolve(dir), resolve(o.dataDir));
      emit(json, r, (x) => keyValues([
        ['restored into', x.dataDir], ['consistent at', x.consistentAt], ['taken by', `Strata ${x.strataVersion}`],
        ['files', `${x.files} (${bytes(x.bytes)}), every sha256 as in the manifest`],
        ['audit log', x.audit.ok ? `${x.audit.size} entries, verified` : 'does not verify'],
      ]));
    });

  registerInstallService(admin);
}
