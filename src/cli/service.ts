/**
 * `strata admin install-service`: the systemd unit that runs `strata up` at
 * boot — restarted on failure, after the network is online, with a file-descriptor
 * limit fit for a gateway holding many connections, and `systemctl reload`
 * mapped to SIGHUP. Built by a pure function (`unitText`) so the text is tested
 * without touching the machine's systemd.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseGatewayListen, parseListen } from './args.js';
import { DEFAULT_DATA_DIR } from './config.js';
import { CliError, emit } from './output.js';
import { LOG_LEVELS } from './up.js';

export interface UnitOptions {
  /** Absolute paths of the node binary and of bin/strata. */
  node: string;
  strata: string;
  dataDir: string;
  apiListen?: string;
  listen: readonly string[];
  logLevel?: string;
  /** Open files: sockets of visitors, upstreams and instances. */
  limitNofile: number;
}

export const DEFAULT_LIMIT_NOFILE = 1_048_576;

/**
 * One word of ExecStart as systemd reads it: `%` doubled (specifiers), `$`
 * doubled (variable expansion), and quoted when it holds anything but plain characters.
 */
export function systemdWord(word: string): string {
  if (/[\n\r\0]/.test(word)) throw new InvalidArgumentError(`not usable in a systemd unit: ${JSON.stringify(word)}`);
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./[\]-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function unitText(o: UnitOptions): string {
  const args = [
    o.node, o.strata, 'up', '--data-dir', o.dataDir,
    ...(o.apiListen ? ['--api-listen', o.apiListen] : []),
    ...o.listen.flatMap((l) => ['--listen', l]),
    ...(o.logLevel ? ['--log-level', o.logLevel] : []),
  ];
  return `# Written by strata admin install-service; see docs/operations.md.
[Unit]
Description=Strata: one Linux server as a small cloud of isolated tenants
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${args.map(systemdWord).join(' ')}
# SIGHUP re-reads the gateway's listeners and certificates from the store.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
# SIGTERM to strata up alone: it stops its gateway workers and drivers itself, in order.
KillMode=mixed
TimeoutStopSec=90s
LimitNOFILE=${o.limitNofile}

[Install]
WantedBy=multi-user.target
`;
}

const packageBin = (): string => fileURLToPath(new URL('../../../bin/strata', import.meta.url));

const systemctl = (args: string[]): void => {
  try {
    execFileSync('systemctl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new CliError(`systemctl ${args.join(' ')} failed: ${stderr || (e as Error).message}`, 'STRATA_ERR_CONFIG');
  }
};

const collect = (value: string, previous: string[] = []): string[] => {
  parseGatewayListen(value);
  return [...previous, value];
};
const listenWord = (value: string): string => {
  parseListen(value);
  return value;
};
const name = (value: string): string => {
  if (!/^[A-Za-z0-9_.@-]{1,100}$/.test(value)) throw new InvalidArgumentError('letters, digits, _ . @ -');
  return value;
};

export function registerInstallService(admin: Command): void {
  admin.command('install-service').description('write the systemd unit that runs strata up at boot (restart on failure, after the network); --enable enables it')
    .option('--data-dir <dir>', 'the data dir the service runs on', DEFAULT_DATA_DIR)
    .option('--api-listen <host:port>', 'passed to strata up', listenWord)
    .option('--listen <proto://host:port>', 'passed to strata up, repeatable', collect)
    .addOption(new Option('--log-level <level>', 'passed to strata up').choices(LOG_LEVELS))
    .option('--limit-nofile <n>', 'LimitNOFILE', (v) => {
      if (!/^\d+$/.test(v) || Number(v) < 1024) throw new InvalidArgumentError('an integer, at least 1024');
      return Number(v);
    }, DEFAULT_LIMIT_NOFILE)
    .option('--name <name>', 'the unit is NAME.service', name, 'strata')
    .option('--unit-dir <dir>', 'where the unit file goes', '/etc/systemd/system')
    .option('--print', 'print the unit instead of writing it')
    .option('--enable', 'then run systemctl daemon-reload and systemctl enable NAME.service (it starts at the next boot, or with systemctl start)')
    .action((o: { dataDir: string; apiListen?: string; listen?: string[]; logLevel?: string; limitNofile: number; name: string; unitDir: string; print?: boolean; enable?: boolean }, cmd: Command) => {
      const json = Boolean(cmd.optsWithGlobals<{ json?: boolean }>().json);
      const text = unitText({
        node: process.execPath, strata: packageBin(), dataDir: resolve(o.dataDir), listen: o.listen ?? [], limitNofile: o.limitNofile,
        ...(o.apiListen ? { apiListen: o.apiListen } : {}), ...(o.logLevel ? { logLevel: o.logLevel } : {}),
      });
      if (o.print) {
        if (o.enable) throw new CliError('--print writes nothing to enable', 'STRATA_ERR_VALIDATION', 2);
        process.stdout.write(text);
        return;
      }
      const path = join(o.unitDir, `${o.name}.service`);
      const unchanged = existsSync(path) && readFileSync(path, 'utf8') === text;
      if (!unchanged) {
        mkdirSync(o.unitDir, { recursive: true });
        writeFileSync(path, text, { mode: 0o644 });
      }
      if (o.enable) {
        systemctl(['daemon-reload']);
        systemctl(['enable', `${o.name}.service`]);
      }
      emit(json, { unit: path, written: !unchanged, enabled: Boolean(o.enable) }, (r) =>
        `${r.written ? 'wrote' : 'unchanged:'} ${r.unit}${r.enabled ? `; enabled (start it now with: systemctl start ${o.name})` : `; enable it with: systemctl enable --now ${o.name}`}`);
    });
}
