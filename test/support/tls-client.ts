/** An HTTPS GET for the certificate tests that reports the leaf it was served. */
import { Agent, request as httpsRequest } from 'node:https';
import type { PeerCertificate } from 'node:tls';

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
