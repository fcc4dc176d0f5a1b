/**
 * `strata console TENANT/NAME`: attaches this terminal to an instance's console
 * (a VM's serial port) over the API's WebSocket. The terminal goes raw; Ctrl-]
 * leaves (as telnet and `virsh console`), the instance keeps running.
 */
import type { Command } from 'commander';
import { parseRef, type Ref } from './args.js';
import { clientFor, seg } from './client.js';
import { onFrames, openSocket, rawMode, stdinFrame } from './socket.js';

/** Ctrl-] */
const ESCAPE = 0x1d;

export function registerConsole(program: Command): void {
  program.command('console').argument('<tenant/name>', 'the instance, e.g. acme/vm', parseRef)
    .description("attach to an instance's serial console; Ctrl-] leaves")
    .action(async (ref: Ref, _o: unknown, cmd: Command) => {
      const c = clientFor(cmd);
      const ws = await openSocket(c, `/v1/tenants/${seg(ref.tenant)}/instances/${seg(ref.name)}/console`);
      process.stderr.write(`Connected to the console of ${ref.tenant}/${ref.name}; Ctrl-] leaves.\r\n`);
      await new Promise<void>((resolve) => {
        const restore = rawMode();
        const onData = (d: Buffer): void => {
          const at = d.indexOf(ESCAPE);
          if (at >= 0) {
            if (at > 0) ws.send(stdinFrame(d.subarray(0, at)));
            ws.close(1000, 'detached');
            return;
          }
          ws.send(stdinFrame(d));
        };
        process.stdin.on('data', onData);
        onFrames(ws, { output: (_channel, data) => process.stdout.write(data), control: () => undefined });
        ws.on('close', () => {
          restore();
          process.stdin.off('data', onData);
          process.stdin.pause();
          process.stderr.write('\r\nDetached.\r\n');
          resolve();
        });
      });
    });
}
