/**
 * `strata cert`: TLS certificates for a tenant's sites — issued by the local
 * (development) CA or over ACME, or uploaded as PEM — and the local CA's
 * certificate for clients to trust. Keys are uploaded, never shown.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { clientFor, seg, type Client, type Operation } from './client.js';
import { printPending } from './operation.js';
import { done, emit, keyValues, table, usageError, when } from './output.js';

interface Certificate {
  id: string;
  tenant: string | null;
  hostnames: string[];
  source: string;
  status: string;
  challenge: string | null;
  certificate: string | null;
  fingerprint: string | null;
  notBefore: string | null;
  notAfter: string | null;
  error: string | null;
  createdAt: string;
}

const showCertificate = (c: Certificate): string => keyValues([
  ['certificate', c.id], ['tenant', c.tenant], ['names', c.hostnames.join(', ')], ['source', c.challenge ? `${c.source} (${c.challenge})` : c.source],
  ['status', c.status], ['valid', `${when(c.notBefore)} → ${when(c.notAfter)}`], ['sha-256', c.fingerprint], ...(c.error ? [['error', c.error] as [string, unknown]] : []),
]);

const basePath = (tenant: string): string => `/v1/tenants/${seg(tenant)}/certificates`;

function challenge(value: string): string {
  if (value !== 'http-01' && value !== 'tls-alpn-01') throw new InvalidArgumentError('http-01 or tls-alpn-01');
  return value;
}

/** The tenant named by --tenant, else the caller's own (tenant users need not say it). */
async function tenantOf(c: Client, flag: string | undefined): Promise<string> {
  if (flag) return flag;
  const me = await c.get<{ tenant: string | null }>('/v1/whoami');
  if (!me.tenant) throw usageError('give --tenant TENANT (your token belongs to no tenant)');
  return me.tenant;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw usageError(`cannot read the ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function registerCert(program: Command): void {
  const cert = program.command('cert').description("TLS certificates for a tenant's sites");

  cert.command('issue <names...>')
    .description("issue a certificate for site names: from the local CA (development), or over ACME with --acme")
    .option('--tenant <tenant>', "the tenant whose sites these are (default: your token's tenant)")
    .option('--acme', 'order it from the ACME CA the daemon is configured with')
    .option('--challenge <type>', 'ACME validation: http-01 (default) or tls-alpn-01', challenge)
    .option('--no-wait', 'ACME: return at once with the operation instead of waiting for it')
    .action(async (names: string[], o: { tenant?: string; acme?: boolean; challenge?: string; wait: boolean }, cmd: Command) => {
      if (o.challenge && !o.acme) throw usageError('--challenge goes with --acme');
      const c = clientFor(cmd);
      const tenant = await tenantOf(c, o.tenant);
      if (!o.acme) {
        emit(c.config.json, await c.request<Certificate>('POST', `${basePath(tenant)}/local-ca`, { body: { hostnames: names } }), showCertificate);
        return;
      }
      const res = await c.request<{ certificate: Certificate; operation: Operation }>('POST', `${basePath(tenant)}/acme`, {
        body: { hostnames: names, ...(o.challenge ? { challenge: o.challenge } : {}) },
      });
      if (!o.wait && printPending(c.config.json, res)) return;
      await c.settle(res, o.wait);
      emit(c.config.json, await c.get<Certificate>(`${basePath(tenant)}/${seg(res.certificate.id)}`), showCertificate);
    });

  cert.command('ca').description("print the local CA's certificate (PEM), for clients to trust")
    .action(async (_o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ certificate: string }>('/v1/certificates/ca');
      emit(c.config.json, res, (r) => r.certificate.trimEnd());
    });

  cert.command('upload <tenant>').description('upload a certificate chain and its key (PEM files)')
    .requiredOption('--cert <file>', 'the certificate, then its chain (PEM)')
    .requiredOption('--key <file>', 'its private key (PEM, unencrypted)')
    .action(async (tenant: string, o: { cert: string; key: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { certificate: readPem(o.cert, 'certificate'), key: readPem(o.key, 'key') };
      emit(c.config.json, await c.request<Certificate>('POST', basePath(tenant), { body, idempotent: true }), showCertificate);
    });

  cert.command('list <tenant>').description("list a tenant's certificates")
    .action(async (tenant: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Certificate[] }>(basePath(tenant));
      emit(c.config.json, res, ({ items }) => table(['ID', 'NAMES', 'SOURCE', 'STATUS', 'EXPIRES'],
        items.map((x) => [x.id, x.hostnames.join(','), x.source, x.status, when(x.notAfter)])));
    });

  cert.command('show <tenant> <id>').description('show a certificate (add --json for its PEM chain)')
    .action(async (tenant: string, id: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Certificate>(`${basePath(tenant)}/${seg(id)}`), showCertificate);
    });

  cert.command('remove <tenant> <id>').description('delete a certificate and its key; its names are then served without it')
    .action(async (tenant: string, id: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `${basePath(tenant)}/${seg(id)}`);
      done(c.config.json, `removed certificate ${id}`, { removed: 'certificate', tenant, id });
    });
}
