/**
 * The `strata` command line: one commander program, one file per command group.
 * `run` returns the exit status; every failure is one line on stderr,
 * `strata: <message> (<code>)` — 1 for API and runtime errors, 2 for bad usage.
 * Set STRATA_DEBUG=1 to see the stack of an unexpected error.
 */
import { Command, CommanderError } from 'commander';
import { VERSION } from '../core/version.js';
import { registerAdmin } from './admin.js';
import { registerAlertOutput } from './alert-output.js';
import { registerApply } from './apply.js';
import { registerAudit } from './audit.js';
import { registerCert } from './cert.js';
import { registerConsole } from './console.js';
import { registerCp } from './cp.js';
import { registerDomain } from './domain.js';
import { registerEvents } from './events.js';
import { registerExec } from './exec.js';
import { registerGuard } from './guard.js';
import { registerImage } from './image.js';
import { registerInfo } from './info.js';
import { registerInstance } from './instance.js';
import { registerListener } from './listener.js';
import { registerLogs } from './logs.js';
import { registerOperation } from './operation.js';
import { formatError, oneLine } from './output.js';
import { registerSite } from './site.js';
import { registerSnapshot } from './snapshot.js';
import { registerStats } from './stats.js';
import { registerTenant } from './tenant.js';
import { registerToken } from './token.js';
import { registerUp } from './up.js';
import { registerUser } from './user.js';

export function buildProgram(): Command {
  const program = new Command('strata')
    .description('Strata: one Linux server as a small cloud of isolated tenants')
    .version(VERSION, '-V, --version')
    .option('--url <url>', 'Strata API URL (env STRATA_URL; default http://127.0.0.1:8470)')
    .option('--token <token>', 'API bearer token (env STRATA_TOKEN)')
    .option('--json', "print the API's JSON instead of tables")
    .option('--reason <text>', 'why a provider-admin acts inside a tenant; recorded in the audit log')
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => {
        const message = oneLine(str.replace(/^error: /, '').replace(/\n\(Did you mean (.*)\?\)/, '; did you mean $1?'));
        write(`strata: ${message} (STRATA_ERR_VALIDATION)\n`);
      },
    })
    .addHelpText('after', '\nConfig: flags, then STRATA_URL/STRATA_TOKEN, then ~/.config/strata/config.json, then the admin token file.');
  registerUp(program);
  registerInfo(program);
  registerTenant(program);
  registerUser(program);
  registerToken(program);
  registerInstance(program);
  registerLogs(program);
  registerStats(program);
  registerExec(program);
  registerConsole(program);
  registerCp(program);
  registerImage(program);
  registerGuard(program);
  registerAlertOutput(program);
  registerSite(program);
  registerDomain(program);
  registerCert(program);
  registerListener(program);
  registerSnapshot(program);
  registerOperation(program);
  registerEvents(program);
  registerApply(program);
  registerAudit(program);
  registerAdmin(program);
  return program;
}

export async function run(argv: string[] = process.argv): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has already printed its message (or the help)
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    }
    process.stderr.write(`${formatError(e)}\n`);
    if (process.env.STRATA_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return (e as { exitCode?: number }).exitCode ?? 1;
  }
}
