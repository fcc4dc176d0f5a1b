/** `strata guard`: the security monitor's alerts, and its rules checked against their fixtures. */
import { Option, type Command } from 'commander';
import { integer } from './args.js';
import { clientFor } from './client.js';
import { CliError, emit, print, table, when } from './output.js';

interface AlertRow {
  time: string;
  rule: string;
  priority: string;
  action: string;
  count: number;
  output: string;
}

export function registerGuard(program: Command): void {
  const guard = program.command('guard').description('the security monitor: alerts and rules');

  guard.command('alerts').description('alerts the guard raised, newest first (a tenant sees its own)')
    .option('--tenant <name>', 'only this tenant')
    .addOption(new Option('--priority <p>', 'this priority or more urgent').choices(['critical', 'error', 'warning', 'notice', 'info']))
    .option('--since <iso-time>', 'raised at or after this time')
    .option('--limit <n>', 'at most N alerts', integer(1, 10_000), 100)
    .action(async (o: { tenant?: string; priority?: string; since?: string; limit: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: AlertRow[] }>('/v1/alerts', { tenant: o.tenant, priority: o.priority, since: o.since, limit: o.limit });
      emit(c.config.json, res, ({ items }) => table(
        ['TIME', 'PRIORITY', 'RULE', 'ACTION', 'COUNT', 'OUTPUT'],
        items.map((a) => [when(a.time), a.priority, a.rule, a.action, a.count, a.output]),
      ));
    });

  guard.command('rules').description('the rules').command('test')
    .description('run every default rule against its firing and its benign fixtures (offline)')
    .action(async (_o: object, cmd: Command) => {
      const { loadDefaultRuleset } = await import('../guard/rules.js');
      const { testRuleFixtures } = await import('../guard/evaluator.js');
      const ruleset = await loadDefaultRuleset();
      const rows = ruleset.rules.map((rule) => {
        const r = testRuleFixtures(ruleset, rule);
        const ok = r.fires.every(Boolean) && r.benign.every((matched) => matched.length === 0);
        return { rule: rule.name, fires: `${r.fires.filter(Boolean).length}/${r.fires.length}`, benign: `${r.benign.filter((m) => m.length === 0).length}/${r.benign.length}`, ok };
      });
      const json = Boolean(cmd.optsWithGlobals().json);
      emit(json, rows, (all) => table(['RULE', 'FIRES', 'BENIGN QUIET', 'OK'], all.map((x) => [x.rule, x.fires, x.benign, x.ok ? 'yes' : 'NO'])));
      if (rows.some((x) => !x.ok)) throw new CliError(`${rows.filter((x) => !x.ok).length} rule(s) fail their fixtures`, 'STRATA_ERR_VALIDATION');
      if (!json) print(`${rows.length} rules pass their fixtures`);
    });
}
