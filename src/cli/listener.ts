/** `strata listener`: the gateway's listeners (provider-admin): add and remove them live, list them all. */
import type { Command } from 'commander';
import { parseGatewayListen } from './args.js';
import { clientFor, seg } from './client.js';
import { done, emit, keyValues, table, when } from './output.js';

interface Listener {
  name: string;
  address: string;
  port: number;
  protocol: string;
  defaultSite: string | null;
  strictSni: boolean;
  origin: string;
  createdAt: string | null;
}

const showListener = (l: Listener): string => keyValues([
  ['listener', l.name], ['listen', `${l.protocol}://${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`],
  ['default site', l.defaultSite ?? '-'], ['strict SNI', l.strictSni], ['origin', l.origin], ['created', when(l.createdAt)],
]);

export function registerListener(program: Command): void {
  const listener = program.command('listener').description("the gateway's listeners (provider-admin)");

  listener.command('add <name> <proto://host:port>')
    .description('listen on one more address and port, live (http, https or tls-passthrough)')
    .option('--default-site <hostname>', 'the site that answers requests naming no known site')
    .option('--strict-sni', 'https: refuse handshakes without SNI or naming no certificate')
    .action(async (name: string, listen: string, o: { defaultSite?: string; strictSni?: boolean }, cmd: Command) => {
      const [{ protocol, host, port }] = parseGatewayListen(listen) as [{ protocol: string; host: string; port: number }];
      const c = clientFor(cmd);
      const body = { name, address: host, port, protocol, ...(o.defaultSite ? { defaultSite: o.defaultSite } : {}), ...(o.strictSni ? { strictSni: true } : {}) };
      emit(c.config.json, await c.request<Listener>('POST', '/v1/listeners', { body }), showListener);
    });

  listener.command('list').description('every listener: from the command line (strata up --listen) and added here')
    .action(async (_o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Listener[] }>('/v1/listeners');
      emit(c.config.json, res, ({ items }) => table(['NAME', 'PROTOCOL', 'ADDRESS', 'PORT', 'DEFAULT SITE', 'ORIGIN'],
        items.map((l) => [l.name, l.protocol, l.address, l.port, l.defaultSite ?? '-', l.origin])));
    });

  listener.command('remove <name>').description('stop listening there, live (connections finish their current response)')
    .action(async (name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `/v1/listeners/${seg(name)}`);
      done(c.config.json, `removed listener ${name}`, { removed: 'listener', name });
    });
}
