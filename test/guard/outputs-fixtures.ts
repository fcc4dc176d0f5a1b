/** Alert outputs in tests: sample alerts, definitions, and a webhook receiver that answers as it is told. */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Alert } from '../../src/guard/actuator.js';
import type { OutputConfig, OutputDefinition } from '../../src/guard/outputs/types.js';

let n = 0;
export const sampleAlert = (more: Partial<Alert> = {}): Alert => ({
  id: `al_test${++n}`, time: new Date().toISOString(), eventTime: Date.now(), rule: 'Shell in web instance', priority: 'critical',
  output: 'shell in a web instance', tenantId: 'tn_a', instanceId: 'in_a', level: 'os', kind: 'process.exec', action: 'notify',
  count: 1, fields: { 'proc.name': 'sh' }, tags: [], auditIndex: n, ...more,
});

export const definition = (config: Partial<OutputConfig> & { type: OutputConfig['type'] }, more: Partial<OutputDefinition> = {}): OutputDefinition => {
  const full = config.type === 'webhook' ? { url: 'http://127.0.0.1:1/', timeoutMs: 5000, retries: 5, headers: {}, ...config }
    : config.type === 'syslog' ? { transport: 'udp', host: '127.0.0.1', port: 514, facility: 16, format: 'json', timeoutMs: 5000, ...config }
    : { path: 'alerts.jsonl', ...config };
  return { id: `out_${++n}`, tenantId: null, name: `o${n}`, config: full as OutputConfig, filter: { minPriority: null, rules: null }, secret: 'whsec_test', ...more };
};

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A webhook receiver on loopback. `answer` decides per request (numbered from
 * 0): a status, or 'hang' (never answer; the request stays open until `close`).
 */
export class Receiver {
  readonly received: Received[] = [];
  readonly #hanging: ServerResponse[] = [];
  private constructor(readonly server: Server, readonly url: string) {}

  static async start(answer: (i: number, r: Received) => number | 'hang' = () => 200): Promise<Receiver> {
    let self: Receiver | undefined;
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { body += c; });
      req.on('end', () => {
        const r = { headers: req.headers, body };
        const i = self!.received.push(r) - 1;
        const a = answer(i, r);
        if (a === 'hang') self!.#hanging.push(res);
        else res.writeHead(a).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new Receiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`);
    return self;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
