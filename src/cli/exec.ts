/**
 * `strata exec [-i] [-t] TENANT/NAME -- CMD…`: runs a command inside a running
 * instance over the API's WebSocket, as `docker exec` does: `-i` sends this
 * terminal's stdin, `-t` gives the command a terminal (this one goes raw, and a
 * window resize follows it). The command's exit code becomes strata's.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { parseRef, type Ref } from './args.js';
import { clientFor, seg } from './client.js';
import { CliError } from './output.js';
import { CHANNEL, onFrames, openSocket, rawMode, sendControl, stdinFrame } from './socket.js';

interface ExecFlags {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  cwd?: string;
}

const envVar = (value: string, previous: string[] = []): string[] => {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(value)) throw new InvalidArgumentError('expected NAME=value');
  return [...previous, value];
};

export function registerExec(program: Command): void {
  program.command('exec').argument('<tenant/name>', 'a running instance, e.g. acme/web', parseRef)
    .argument('<cmd...>', 'the command and its arguments (after --)')
    .description('run a command inside a running instance; its exit code is strata\'s')
    .option('-i, --interactive', 'send stdin to the command')
    .option('-t, --tty', 'give the command a terminal')
    .option('-e, --env <NAME=value>', 'set an environment variable (repeatable)', envVar)
    .option('-w, --cwd <dir>', 'working directory inside the instance')
    .action(async (ref: Ref, argv: string[], o: ExecFlags, cmd: Command) => {
      const c = clientFor(cmd);
      const tty = o.tty === true;
      const query: Array<[string, string]> = argv.map((a) => ['cmd', a]);
      if (tty) {
        query.push(['tty', 'true']);
        if (process.stdout.columns) query.push(['cols', String(process.stdout.columns)], ['rows', String(process.stdout.rows)]);
      }
      for (const e of o.env ?? []) query.push(['env', e]);
      if (o.cwd) query.push(['cwd', o.cwd]);
      const ws = await openSocket(c, `/v1/tenants/${seg(ref.tenant)}/instances/${seg(ref.name)}/exec`, query);
      process.exitCode = await session(ws, { interactive: o.interactive === true, tty });
    });
}

/** Relays the terminal and the socket until the command exits; resolves with its exit code. */
function session(ws: import('ws').WebSocket, o: { interactive: boolean; tty: boolean }): Promise<number> {
  return new Promise((resolve, reject) => {
    let code: number | null = null;
    const restore = o.tty && o.interactive ? rawMode() : () => undefined;
    const resize = (): void => sendControl(ws, { type: 'resize', cols: process.stdout.columns, rows: process.stdout.rows });
    const onData = (d: Buffer): void => void ws.send(stdinFrame(d));
    const onEnd = (): void => sendControl(ws, { type: 'eof' });
    if (o.tty && process.stdout.isTTY) process.on('SIGWINCH', resize);
    if (o.interactive) {
      process.stdin.on('data', onData);
      process.stdin.once('end', onEnd);
    } else {
      onEnd();
    }
    onFrames(ws, {
      output: (channel, data) => (channel === CHANNEL.stderr ? process.stderr : process.stdout).write(data),
      control: (m) => {
        if (m.type === 'exit' && typeof m.code === 'number') code = m.code;
      },
    });
    ws.on('close', () => {
      restore();
      process.off('SIGWINCH', resize);
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
      if (code === null) reject(new CliError('the exec session ended without an exit code (the instance stopped or the daemon went away)', 'STRATA_ERR_UNAVAILABLE'));
      else resolve(code);
    });
  });
}
