/** Small clients for the certificate tests: a free loopback port, and an HTTPS GET that reports the leaf it was served. */
import { Agent, request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import type { PeerCertificate } from 'node:tls';

/** A TCP port free on `host` a moment ago (for listeners that must be configured with a fixed port). */
export const freePort = (host = '127.0.0.1'): Promise<number> => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, host, () => {
    const { port } = s.address() as AddressInfo;
    s.close(() => resolve(port));
  });
});

/**
 * GET over HTTPS to 127.0.0.1:`port` trusting only `ca`; with `name`, that is
 * the SNI name and the Host. Resolves with status, body and the SHA-256
 * fingerprint of the certificate the server presented.
 */
export function httpsGet(port: number, ca: string, opts: { name?: string; path?: string; agent?: Agent } = {}): Promise<{ status: number; body: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path: opts.path ?? '/', ca, agent: opts.agent ?? false,
      ...(opts.name ? { servername: opts.name, headers: { host: opts.name } } : {}),
    }, (res) => {
      const fingerprint = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate().fingerprint256;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint }));
    });
    req.on('error', reject);
    req.end();
  });
}
