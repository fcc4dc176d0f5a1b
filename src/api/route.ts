/**
 * One way to declare an API route: method, URL, zod schemas for params, query and
 * body, the responses, and a handler. `registerRoutes` validates every input with
 * the schemas (400 naming the field), authenticates, and adds the route to the
 * OpenAPI document — the document and the validation cannot drift apart because
 * they are the same objects.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { StrataError } from '../core/errors.js';
import { validationError, zodValidationError } from '../core/validation.js';
import type { Principal } from '../auth/policy.js';
import { presentOperation } from './present.js';
import type { Services } from './services.js';

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface Call<P, Q, B> {
  /** The authenticated caller (routes with `auth: false` never see one). */
  p: Principal;
  params: P;
  query: Q;
  body: B;
  req: FastifyRequest;
  reply: FastifyReply;
  /** Appends the audit entry for this call; use inside the transaction of the change. */
  audit(entry: { action: string; target: string; tenantId: string | null; details?: Record<string, unknown> }): void;
}

/** A call's audit function, as the functions routes share (with `apply`) take it. */
export type AuditFn = Call<unknown, unknown, unknown>['audit'];

export interface Reply {
  status?: number;
  body: unknown;
}

export interface RouteDef<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: Method;
  url: string;
  summary: string;
  tag: string;
  /** false: no token at all; 'handler': the handler authenticates (documented as bearer all the same). */
  auth?: boolean | 'handler';
  params?: P;
  query?: Q;
  body?: B;
  /** Status → schema of the body (null: no body). Documented in OpenAPI. */
  responses: Record<number, z.ZodType | null>;
  /** Replays the first answer for a repeated `Idempotency-Key` (creates). Handler must be synchronous. */
  idempotent?: boolean;
  /** Action name written to the audit log when the call fails before the handler audits it. */
  auditAs?: string;
  /** The body is bytes of this media type (a tar archive), handed to the handler as a Buffer; `body` is then unused. */
  binaryBody?: string;
  /** Hand-written responses (SSE, metrics): the handler writes to `reply` itself. */
  raw?: boolean;
  /**
   * The reply carries `operation`: with `?wait=N` the route layer waits for it and
   * answers 200 once finished (202 if still running), then calls `refresh` to
   * re-read the objects the body shows.
   */
  operation?: { refresh?: (body: Record<string, unknown>, s: Services) => Record<string, unknown> };
  handler(call: Call<z.infer<P>, z.infer<Q>, z.infer<B>>, s: Services): Reply | Promise<Reply> | void | Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRoute = RouteDef<any, any, any>;

export const defineRoute = <P extends z.ZodType = z.ZodUndefined, Q extends z.ZodType = z.ZodUndefined, B extends z.ZodType = z.ZodUndefined>(
  def: RouteDef<P, Q, B>,
): RouteDef<P, Q, B> => def;

/** Waits up to `wait` seconds for the reply's operation; 200 once it has finished, 202 while it runs. */
async function waitForOperation(s: Services, out: Reply, wait: number | undefined, refresh?: (b: Record<string, unknown>, s: Services) => Record<string, unknown>): Promise<Reply> {
  const body = out.body as { operation: { id: string } } & Record<string, unknown>;
  const op = await s.operations.wait(body.operation.id, wait ?? 0);
  const done = op.status === 'succeeded' || op.status === 'failed';
  const next = { ...body, operation: presentOperation(s, op) };
  return { status: done ? 200 : 202, body: refresh ? refresh(next, s) : next };
}

/** Fastify `:param` → OpenAPI `{param}`. */
const openapiPath = (url: string): string => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

function parse<T extends z.ZodType>(schema: T | undefined, value: unknown, where: 'params' | 'query' | 'body'): z.infer<T> {
  if (!schema) {
    // Routes without a schema for this part take none: anything sent is a mistake worth naming.
    const empty = value === undefined || value === null || (typeof value === 'object' && Object.keys(value).length === 0);
    if (!empty && where !== 'params') {
      throw validationError(where, 'this route takes none');
    }
    return undefined as z.infer<T>;
  }
  const r = schema.safeParse(value ?? (where === 'body' ? {} : value));
  if (!r.success) throw zodValidationError(r.error, [where]);
  return r.data;
}

function binary(value: unknown, type: string): Buffer {
  if (!Buffer.isBuffer(value)) throw new StrataError('STRATA_ERR_UNSUPPORTED_MEDIA_TYPE', `the request body must be ${type}`);
  return value;
}

const requestHash = (req: FastifyRequest): string =>
  createHash('sha256').update(`${req.method} ${req.url}\n${JSON.stringify(req.body ?? null)}`).digest('hex');

export function registerRoutes(app: FastifyInstance, routes: readonly AnyRoute[], s: Services): void {
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      handler: async (req, reply) => {
        const p = route.auth === false || route.auth === 'handler' ? (undefined as unknown as Principal) : s.auth.authenticate(req);
        const call: Call<unknown, unknown, unknown> = {
          p,
          params: parse(route.params, req.params, 'params'),
          query: parse(route.query, req.query, 'query'),
          body: route.binaryBody ? binary(req.body, route.binaryBody) : parse(route.body, req.body, 'body'),
          req,
          reply,
          audit: (entry) => {
            req.strataAudited = true;
            (req.strataAuditEvents ??= []).push(entry);
            s.audit.append({
              actor: { userId: p?.userId ?? null, name: p?.name ?? 'anonymous', role: p?.role ?? 'none' },
              tenantId: entry.tenantId,
              action: entry.action,
              target: entry.target,
              result: 'ok',
              ...(p?.reason ? { reason: p.reason } : {}),
              ...(entry.details ? { details: entry.details } : {}),
            });
          },
        };
        if (route.raw) {
          await route.handler(call, s);
          return reply;
        }
        const key = route.idempotent ? req.headers['idempotency-key'] : undefined;
        let out: Reply;
        if (typeof key === 'string' && p) {
          if (key.length < 1 || key.length > 255) {
            throw new StrataError('STRATA_ERR_VALIDATION', 'Idempotency-Key: 1-255 characters', {
              issues: [{ field: 'headers.idempotency-key', message: '1-255 characters' }],
            });
          }
          const hash = requestHash(req);
          out = s.store.transaction(() => {
            const seen = s.store.getIdempotent(p.userId, key);
            if (seen) {
              if (seen.requestHash !== hash) {
                throw new StrataError('STRATA_ERR_IDEMPOTENCY_MISMATCH', 'Idempotency-Key was used with a different request');
              }
              req.strataAudited = true;
              reply.header('idempotent-replayed', 'true');
              return { status: seen.status, body: JSON.parse(seen.body) as unknown };
            }
            const fresh = route.handler(call, s) as Reply;
            if (fresh instanceof Promise) throw new Error(`idempotent route ${route.url} must be synchronous`);
            s.store.putIdempotent(p.userId, key, { requestHash: hash, status: fresh.status ?? 200, body: JSON.stringify(fresh.body) });
            return fresh;
          });
        } else {
          out = (await route.handler(call, s)) as Reply;
        }
        if (route.operation) out = await waitForOperation(s, out, (call.query as { wait?: number } | undefined)?.wait, route.operation.refresh);
        return reply.code(out.status ?? 200).send(out.body);
      },
    });
  }
}

/** The OpenAPI 3 document, generated from the routes' own schemas. */
export function openapiDocument(routes: readonly AnyRoute[], version: string): Record<string, unknown> {
  const toSchema = (schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> =>
    z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Record<string, unknown>;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const parameters: unknown[] = [];
    for (const [where, schema] of [['path', r.params], ['query', r.query]] as const) {
      if (!schema) continue;
      const js = toSchema(schema, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, prop] of Object.entries(js.properties ?? {})) {
        parameters.push({ name, in: where, required: where === 'path' || (js.required ?? []).includes(name), schema: prop });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries(r.responses)) {
      responses[status] = schema
        ? { description: `HTTP ${status}`, content: { 'application/json': { schema: toSchema(schema, 'output') } } }
        : { description: `HTTP ${status}` };
    }
    responses.default = { description: 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    const path = (paths[openapiPath(r.url)] ??= {});
    path[r.method.toLowerCase()] = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method.toLowerCase()}${openapiPath(r.url).replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
      ...(r.auth === false ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(r.binaryBody ? { requestBody: { required: true, content: { [r.binaryBody]: { schema: { type: 'string', format: 'binary' } } } } } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: toSchema(r.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.0.3',
    info: { title: 'Strata API', version },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object' } },
            },
          },
        },
      },
    },
    paths,
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    strataAudited?: boolean;
    /** Audit entries this call wrote; published on the event stream once the call succeeded. */
    strataAuditEvents?: Array<{ action: string; target: string; tenantId: string | null }>;
    strataPrincipal?: Principal;
  }
}
