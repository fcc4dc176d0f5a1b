/** `strata info` and `strata whoami`: the daemon, its levels, and who you are to it. */
import type { Command } from 'commander';
import { clientFor } from './client.js';
import { emit, keyValues, table, when } from './output.js';

interface Info {
  version: string;
  startedAt: string;
  levels: Array<{ level: string; driver: string | null; available: boolean; reason: string }>;
  audit: { size: number };
}

interface WhoAmI {
  user: string;
  role: string;
  tenant: string | null;
  token: string;
}

export function registerInfo(program: Command): void {
  program.command('info').description('show the daemon: version, isolation levels and their drivers, audit log size')
    .action(async (_o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const info = await c.get<Info>('/v1/info');
      emit(c.config.json, info, (i) =>
        `${keyValues([['api', c.config.url], ['version', i.version], ['started', when(i.startedAt)], ['audit entries', i.audit.size]])}\n\n` +
        table(['LEVEL', 'DRIVER', 'AVAILABLE', 'REASON'], i.levels.map((l) => [l.level, l.driver, l.available ? 'yes' : 'no', l.reason])));
    });

  program.command('whoami').description('show the user, role and tenant of your token')
    .action(async (_o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<WhoAmI>('/v1/whoami'), (w) =>
        keyValues([['user', w.user], ['role', w.role], ['tenant', w.tenant], ['token', w.token], ['api', c.config.url]]));
    });
}
