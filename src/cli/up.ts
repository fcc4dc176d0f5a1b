/**
 * `strata up`: runs the daemon in the foreground until SIGTERM or SIGINT, then
 * closes it cleanly and exits 0. SIGHUP re-reads the gateway's listeners and
 * certificates from the store (as nginx re-reads its config) and logs what it
 * serves. Logs are JSON lines on stderr at `--log-level` (pino's levels);
 * stdout gets two human lines: the API URL and where the provider-admin token is.
 *
 * The daemon and its dependencies are imported only here, so the other commands
 * start fast.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseNetworkPlan, type NetworkPlan } from '../levels/network-option.js';
import { parseGatewayListen, parseListen } from './args.js';
import { DEFAULT_DATA_DIR } from './config.js';
import { CliError, print, usageError } from './output.js';

/** `TAG:SUBNET` for a level's network plan, as a one-line usage error when wrong. */
const networkPlan = (flag: string) => (value: string): NetworkPlan => {
  try {
    return parseNetworkPlan(value, flag);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};

/** pino's levels, quietest last. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_LISTEN = { host: '127.0.0.1', port: 8470 };
export const DEFAULT_GATEWAY_LISTEN = { host: '127.0.0.1', port: 8080 };

export function registerUp(program: Command): void {
  program.command('up').description('start the Strata daemon in the foreground (stop it with Ctrl-C or SIGTERM)')
    .option('--data-dir <dir>', 'where the store, audit key and admin token live', DEFAULT_DATA_DIR)
    .option('--api-listen <host:port>', 'address of the REST API (default 127.0.0.1:8470)', parseListen)
    .option('--listen <proto://host:port>', 'a gateway listener for visitors, repeatable (default http://127.0.0.1:8080)', parseGatewayListen)
    .option('--no-gateway', 'run without the front door')
    .option('--acme-directory <url>', "ACME CA directory for tenants' certificates (e.g. https://acme-v02.api.letsencrypt.org/directory)")
    .option('--acme-ca <file>', "PEM of the CA behind the ACME directory's own TLS, when it is a private one (pebble)")
    .option('--acme-email <address>', 'contact address for the ACME account')
    .option('--vm-network <tag:subnet>', "the vm level's bridges and addresses (default sv:10.89.0.0/16); a second daemon on the machine needs its own", networkPlan('--vm-network'))
    .option('--emu-network <tag:subnet>', "the emu level's (default se:10.90.0.0/16)", networkPlan('--emu-network'))
    .option('--metrics-token-file <file>', 'a file holding a secret (32+ characters) that reads /metrics as a metrics-reader does, for a scraper with no user')
    .addOption(new Option('--log-level <level>', 'the least severe log lines written to stderr').choices(LOG_LEVELS).default('info'))
    .action(async (o: { logLevel: LogLevel; vmNetwork?: NetworkPlan; emuNetwork?: NetworkPlan; dataDir: string; apiListen?: { host: string; port: number }; listen?: ReturnType<typeof parseGatewayListen>; gateway: boolean; acmeDirectory?: string; acmeCa?: string; acmeEmail?: string; metricsTokenFile?: string }) => {
      const acme = o.acmeDirectory === undefined ? undefined : {
        directoryUrl: o.acmeDirectory, ...(o.acmeCa ? { directoryCaPem: readFileSync(o.acmeCa, 'utf8') } : {}), ...(o.acmeEmail ? { email: o.acmeEmail } : {}),
      };
      const scrapeToken = o.metricsTokenFile === undefined ? undefined : readFileSync(o.metricsTokenFile, 'utf8').trim();
      if (scrapeToken !== undefined && scrapeToken.length < 32) throw usageError(`--metrics-token-file: ${o.metricsTokenFile} holds ${scrapeToken.length} characters; a scrape token needs 32 or more`);
      const { host, port } = o.apiListen ?? DEFAULT_LISTEN;
      const listeners = (o.listen ?? [{ protocol: 'http' as const, ...DEFAULT_GATEWAY_LISTEN }])
        .map((l, i) => ({ id: `${l.protocol}-${i}`, address: l.host, port: l.port, protocol: l.protocol }));
      const [{ startDaemon }, { productDrivers }, { default: pino }] = await Promise.all([
        import('../daemon.js'), import('../levels/index.js'), import('pino'),
      ]);
      const logger = pino({ level: o.logLevel, base: { svc: 'strata' } }, pino.destination({ dest: 2, sync: true }));
      // Installed before the start, so an early SIGHUP does not end the process (its default action); the start reads everything anyway.
      let reload: (() => Promise<unknown>) | null = null;
      process.on('SIGHUP', () => {
        if (!reload) return logger.info({ signal: 'SIGHUP' }, 'still starting: nothing to reload yet');
        reload().then(
          (serves) => logger.info({ signal: 'SIGHUP', serves }, 'reloaded listeners and certificates from the store'),
          (err: unknown) => logger.error({ signal: 'SIGHUP', err }, 'reload failed; the gateway keeps what it served'),
        );
      });
      const daemon = await startDaemon({ dataDir: resolve(o.dataDir), host, port, drivers: productDrivers(resolve(o.dataDir), { gatewayPorts: o.gateway ? listeners.map((l) => l.port) : [], ...(o.vmNetwork ? { vmNetwork: o.vmNetwork } : {}), ...(o.emuNetwork ? { emuNetwork: o.emuNetwork } : {}) }), logger, guard: { selfCheck: true, bpf: true }, ...(acme ? { acme } : {}), ...(scrapeToken ? { metricsScrapeToken: scrapeToken } : {}), ...(o.gateway ? { gateway: { listeners } } : {}) }).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE') throw new CliError(`cannot listen on ${host}:${port}: the address is in use`, e.code);
        if (e.code === 'EACCES' || e.code === 'EPERM') throw new CliError(`${e.message} (run as root, or pass --data-dir)`, e.code);
        throw e;
      });
      reload = () => daemon.reload();
      print(`Strata API listening on ${daemon.url}`);
      print(`Provider-admin token in ${daemon.tokenPath}`);
      for (const l of daemon.services.gateway?.addresses() ?? []) print(`Gateway ${l.id} on ${l.address}:${l.port}`);
      const signal = await new Promise<NodeJS.Signals>((done) => {
        process.once('SIGINT', done);
        process.once('SIGTERM', done);
      });
      logger.info({ signal }, 'shutting down');
      const force = (): never => process.exit(1);
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      await daemon.close();
      process.exit(0);
    });
}
