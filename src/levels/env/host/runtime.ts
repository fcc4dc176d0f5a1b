/**
 * The runtime every tenant isolate starts with: a small, faithful subset of the
 * Workers / WinterCG globals (Request, Response, Headers, URL, URLSearchParams,
 * TextEncoder, TextDecoder, console, crypto, setTimeout, fetch) and the `env`
 * bindings (vars, KV).
 *
 * `installRuntime` is never called in the host's own heap: its source text
 * (`Function.prototype.toString`) goes into the isolate snapshot, so it must not
 * refer to anything outside its body. The host calls it once per isolate with
 * plain functions made from `ivm.Callback`s — the only way out of the isolate —
 * and gets back the four entry points the host calls in. Every value crossing
 * either way is copied; no host object is ever reachable from tenant code.
 */

/** What the host gives the runtime: each a copy-only callback, no references. */
export interface RuntimeBridge {
  /** Starts an async host call (kv.*, fetch); the answer comes back through `settle`. */
  call(id: number, kind: string, fieldsJson: string, body: Uint8Array | null): void;
  /** Reports a call that needs no answer (console, crypto, timers). */
  notify(kind: string, fieldsJson: string): void;
  /** n random bytes from the host's CSPRNG. */
  random(n: number): Uint8Array;
  /** Arms timer `id` to fire after `ms`; `fire(id)` comes back. */
  arm(id: number, ms: number): void;
  disarm(id: number): void;
}

export interface RuntimeEntryPoints {
  bind(namespace: unknown): void;
  dispatch(head: { method: string; url: string; headers: Array<[string, string]> }, body: Uint8Array | null): Promise<unknown>;
  settle(id: number, ok: boolean, value: unknown, body: Uint8Array | null): void;
  fire(id: number): void;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
export function installRuntime(
  call: RuntimeBridge['call'], notify: RuntimeBridge['notify'], random: RuntimeBridge['random'],
  arm: RuntimeBridge['arm'], disarm: RuntimeBridge['disarm'], varsJson: string, maxTimers: number, maxTimerMs: number,
): RuntimeEntryPoints {
  const g: any = globalThis;
  delete g.__strata_install;
  const stringify = JSON.stringify;
  const parse = JSON.parse;

  // ---- UTF-8 ----------------------------------------------------------------
  function utf8Encode(s: string): Uint8Array {
    const out = new Uint8Array(s.length * 3);
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) out[n++] = c;
      else if (c < 0x800) { out[n++] = 0xc0 | (c >> 6); out[n++] = 0x80 | (c & 63); }
      else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        const cp = 0x10000 + ((c & 0x3ff) << 10) + (s.charCodeAt(++i) & 0x3ff);
        out[n++] = 0xf0 | (cp >> 18); out[n++] = 0x80 | ((cp >> 12) & 63); out[n++] = 0x80 | ((cp >> 6) & 63); out[n++] = 0x80 | (cp & 63);
      } else {
        if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
        out[n++] = 0xe0 | (c >> 12); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63);
      }
    }
    return out.slice(0, n);
  }
  function utf8Decode(b: Uint8Array): string {
    const units: number[] = [];
    let out = '';
    for (let i = 0; i < b.length;) {
      const c = b[i++]!;
      let cp = 0xfffd;
      if (c < 0x80) cp = c;
      else if (c >= 0xc2 && c < 0xe0 && i < b.length && (b[i]! & 0xc0) === 0x80) cp = ((c & 31) << 6) | (b[i++]! & 63);
      else if (c >= 0xe0 && c < 0xf0 && i + 1 < b.length && (b[i]! & 0xc0) === 0x80 && (b[i + 1]! & 0xc0) === 0x80) {
        const v = ((c & 15) << 12) | ((b[i]! & 63) << 6) | (b[i + 1]! & 63);
        if (v >= 0x800 && (v < 0xd800 || v > 0xdfff)) { cp = v; i += 2; }
      } else if (c >= 0xf0 && c < 0xf5 && i + 2 < b.length && (b[i]! & 0xc0) === 0x80 && (b[i + 1]! & 0xc0) === 0x80 && (b[i + 2]! & 0xc0) === 0x80) {
        const v = ((c & 7) << 18) | ((b[i]! & 63) << 12) | ((b[i + 1]! & 63) << 6) | (b[i + 2]! & 63);
        if (v >= 0x10000 && v <= 0x10ffff) { cp = v; i += 3; }
      }
      if (cp > 0xffff) { cp -= 0x10000; units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff)); } else units.push(cp);
      if (units.length >= 8192) { out += String.fromCharCode(...units); units.length = 0; }
    }
    return out + String.fromCharCode(...units);
  }
  function toBytes(body: unknown): Uint8Array | string | null {
    if (body === null || body === undefined) return null;
    if (typeof body === 'string') return body;
    if (body instanceof Uint8Array) return body.slice();
    if (body instanceof ArrayBuffer) return new Uint8Array(body.slice(0));
    if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
    if (body instanceof URLSearchParams) return body.toString();
    return String(body);
  }

  class TextEncoder {
    get encoding(): string { return 'utf-8'; }
    encode(s = ''): Uint8Array { return utf8Encode(String(s)); }
  }
  class TextDecoder {
    get encoding(): string { return 'utf-8'; }
    decode(b?: ArrayBuffer | ArrayBufferView): string {
      if (b === undefined) return '';
      const bytes = b instanceof Uint8Array ? b : ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(b);
      return utf8Decode(bytes);
    }
  }

  // ---- URL ------------------------------------------------------------------
  const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
  const dec = (s: string): string => { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch { return s; } };
  class URLSearchParams {
    #list: Array<[string, string]> = [];
    constructor(init?: string | Record<string, string> | Array<[string, string]>) {
      if (typeof init === 'string') {
        for (const part of (init.startsWith('?') ? init.slice(1) : init).split('&')) {
          if (part === '') continue;
          const eq = part.indexOf('=');
          this.#list.push(eq < 0 ? [dec(part), ''] : [dec(part.slice(0, eq)), dec(part.slice(eq + 1))]);
        }
      } else if (Array.isArray(init)) for (const [k, v] of init) this.#list.push([String(k), String(v)]);
      else if (init) for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
    }
    get(name: string): string | null { return this.#list.find(([k]) => k === name)?.[1] ?? null; }
    getAll(name: string): string[] { return this.#list.filter(([k]) => k === name).map(([, v]) => v); }
    has(name: string): boolean { return this.#list.some(([k]) => k === name); }
    set(name: string, value: string): void { this.delete(name); this.#list.push([name, String(value)]); }
    append(name: string, value: string): void { this.#list.push([name, String(value)]); }
    delete(name: string): void { this.#list = this.#list.filter(([k]) => k !== name); }
    entries(): IterableIterator<[string, string]> { return this.#list.map(([k, v]) => [k, v] as [string, string])[Symbol.iterator](); }
    keys(): IterableIterator<string> { return this.#list.map(([k]) => k)[Symbol.iterator](); }
    values(): IterableIterator<string> { return this.#list.map(([, v]) => v)[Symbol.iterator](); }
    forEach(fn: (value: string, key: string, self: URLSearchParams) => void): void { for (const [k, v] of this.#list) fn(v, k, this); }
    [Symbol.iterator](): IterableIterator<[string, string]> { return this.entries(); }
    toString(): string { return this.#list.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&'); }
  }
  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)\/\/(?:([^@/?#]*)@)?(\[[0-9a-fA-F:.]+\]|[^:/?#]*)(?::(\d*))?([^?#]*)(\?[^#]*)?(#.*)?$/;
  const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' };
  class URL {
    protocol: string; username: string; password: string; hostname: string; port: string; pathname: string; hash: string;
    readonly searchParams: URLSearchParams;
    constructor(input: string, base?: string | URL) {
      let s = String(input).trim();
      if (!URL_RE.test(s) && base !== undefined) {
        const b = new URL(String(base));
        if (s.startsWith('//')) s = b.protocol + s;
        else if (s.startsWith('/')) s = b.origin + s;
        else if (s.startsWith('?')) s = b.origin + b.pathname + s;
        else if (s.startsWith('#')) s = b.origin + b.pathname + b.search + s;
        else s = b.origin + b.pathname.replace(/[^/]*$/, '') + s;
      }
      const m = URL_RE.exec(s);
      if (!m) throw new TypeError(`Invalid URL: ${String(input)}`);
      this.protocol = m[1]!.toLowerCase();
      const [user = '', pass = ''] = (m[2] ?? '').split(':');
      this.username = user; this.password = pass;
      this.hostname = m[3]!.toLowerCase();
      this.port = m[4] && m[4] !== DEFAULT_PORTS[this.protocol] ? m[4] : '';
      const segments: string[] = [];
      for (const seg of (m[5] || '/').split('/').slice(1)) {
        if (seg === '..') segments.pop(); else if (seg !== '.') segments.push(seg);
      }
      this.pathname = '/' + segments.join('/');
      this.searchParams = new URLSearchParams(m[6] ?? '');
      this.hash = m[7] && m[7] !== '#' ? m[7] : '';
    }
    get host(): string { return this.port ? `${this.hostname}:${this.port}` : this.hostname; }
    get origin(): string { return `${this.protocol}//${this.host}`; }
    get search(): string { const q = this.searchParams.toString(); return q ? `?${q}` : ''; }
    get href(): string {
      const auth = this.username ? `${this.username}${this.password ? `:${this.password}` : ''}@` : '';
      return `${this.protocol}//${auth}${this.host}${this.pathname}${this.search}${this.hash}`;
    }
    toString(): string { return this.href; }
    toJSON(): string { return this.href; }
  }

  // ---- Headers, Request, Response ------------------------------------------
  const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
  const normName = (name: string): string => {
    const n = String(name);
    if (!TOKEN.test(n)) throw new TypeError(`Invalid header name: ${n}`);
    return n.toLowerCase();
  };
  const normValue = (value: string): string => {
    const v = String(value).trim();
    if (/[\r\n\0]/.test(v)) throw new TypeError('Invalid header value');
    return v;
  };
  type HeadersInit = Headers | Array<[string, string]> | Record<string, string>;
  class Headers {
    #map = new Map<string, string>();
    constructor(init?: HeadersInit) {
      if (init instanceof Headers) init.forEach((v, k) => this.append(k, v));
      else if (Array.isArray(init)) for (const [k, v] of init) this.append(k, v);
      else if (init) for (const k of Object.keys(init)) this.append(k, init[k]!);
    }
    get(name: string): string | null { return this.#map.get(normName(name)) ?? null; }
    has(name: string): boolean { return this.#map.has(normName(name)); }
    set(name: string, value: string): void { this.#map.set(normName(name), normValue(value)); }
    append(name: string, value: string): void {
      const k = normName(name);
      const v = normValue(value);
      const old = this.#map.get(k);
      this.#map.set(k, old === undefined ? v : `${old}, ${v}`);
    }
    delete(name: string): void { this.#map.delete(normName(name)); }
    forEach(fn: (value: string, key: string, self: Headers) => void): void { for (const [k, v] of this.entries()) fn(v, k, this); }
    entries(): IterableIterator<[string, string]> { return [...this.#map.entries()].sort(([a], [b]) => (a < b ? -1 : 1))[Symbol.iterator](); }
    keys(): IterableIterator<string> { return [...this.entries()].map(([k]) => k)[Symbol.iterator](); }
    values(): IterableIterator<string> { return [...this.entries()].map(([, v]) => v)[Symbol.iterator](); }
    [Symbol.iterator](): IterableIterator<[string, string]> { return this.entries(); }
  }

  /** Body handling shared by Request and Response: read once, as text, JSON or bytes. */
  class Body {
    #body: Uint8Array | string | null;
    #used = false;
    constructor(body: Uint8Array | string | null) { this.#body = body; }
    get bodyUsed(): boolean { return this.#used; }
    get body(): null | Uint8Array { return this.#body === null ? null : typeof this.#body === 'string' ? utf8Encode(this.#body) : this.#body; }
    #take(): Uint8Array | string | null {
      if (this.#used) throw new TypeError('Body has already been used');
      this.#used = true;
      return this.#body;
    }
    async text(): Promise<string> { const b = this.#take(); return b === null ? '' : typeof b === 'string' ? b : utf8Decode(b); }
    async json(): Promise<unknown> { return parse(await this.text()); }
    async arrayBuffer(): Promise<ArrayBuffer> {
      const b = this.#take();
      const bytes = b === null ? new Uint8Array(0) : typeof b === 'string' ? utf8Encode(b) : b.slice();
      return bytes.buffer as ArrayBuffer;
    }
    static peek(b: Body): Uint8Array | string | null { return b.#body; }
  }

  const METHODS = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'];
  class Request extends Body {
    readonly method: string;
    readonly url: string;
    readonly headers: Headers;
    constructor(input: string | URL | Request, init: { method?: string; headers?: HeadersInit; body?: unknown } = {}) {
      const from = input instanceof Request ? input : null;
      const method = String(init.method ?? from?.method ?? 'GET');
      const upper = method.toUpperCase();
      const normalized = METHODS.includes(upper) ? upper : method;
      const body = init.body !== undefined ? toBytes(init.body) : from ? Body.peek(from) : null;
      if (body !== null && (normalized === 'GET' || normalized === 'HEAD')) throw new TypeError('Request with GET/HEAD method cannot have body.');
      super(body);
      this.method = normalized;
      this.url = from ? from.url : new URL(String(input)).href;
      this.headers = new Headers(init.headers ?? from?.headers);
    }
    clone(): Request { return new Request(this); }
  }

  let readResponse!: (r: Response) => { status: number; headers: Array<[string, string]>; body: Uint8Array | string | null };
  class Response extends Body {
    readonly status: number;
    readonly statusText: string;
    readonly headers: Headers;
    constructor(body?: unknown, init: { status?: number; statusText?: string; headers?: HeadersInit } = {}) {
      const status = init.status ?? 200;
      if (!Number.isInteger(status) || status < 200 || status > 599) throw new RangeError(`Invalid status ${status}`);
      const bytes = toBytes(body);
      super(bytes);
      this.status = status;
      this.statusText = String(init.statusText ?? '');
      this.headers = new Headers(init.headers);
      if (typeof bytes === 'string' && !this.headers.has('content-type')) {
        this.headers.set('content-type', body instanceof URLSearchParams ? 'application/x-www-form-urlencoded;charset=UTF-8' : 'text/plain;charset=UTF-8');
      }
    }
    get ok(): boolean { return this.status >= 200 && this.status < 300; }
    clone(): Response { return new Response(Body.peek(this), this); }
    static json(data: unknown, init: { status?: number; headers?: HeadersInit } = {}): Response {
      const headers = new Headers(init.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new Response(stringify(data), { ...init, headers });
    }
    static redirect(url: string, status = 302): Response {
      if (![301, 302, 303, 307, 308].includes(status)) throw new RangeError(`Invalid redirect status ${status}`);
      return new Response(null, { status, headers: { location: new URL(url).href } });
    }
    static {
      readResponse = (r) => ({ status: r.status, headers: [...r.headers.entries()], body: Body.peek(r) });
    }
  }

  // ---- host calls -----------------------------------------------------------
  const pending = new Map<number, { resolve: (v: { value: any; body: Uint8Array | null }) => void; reject: (e: Error) => void }>();
  let nextCall = 0;
  function hostCall(kind: string, fields: object, body: Uint8Array | null = null): Promise<{ value: any; body: Uint8Array | null }> {
    return new Promise((resolve, reject) => {
      const id = ++nextCall;
      pending.set(id, { resolve, reject });
      call(id, kind, stringify(fields), body);
    });
  }

  function format(args: unknown[]): string {
    return args.map((a) => {
      if (typeof a === 'string') return a;
      if (a instanceof Error) return a.stack ?? `${a.name}: ${a.message}`;
      try { return stringify(a) ?? String(a); } catch { return String(a); }
    }).join(' ').slice(0, 16 * 1024);
  }
  const log = (level: string) => (...args: unknown[]): void => notify('console', stringify({ level, message: format(args) }));
  const console = { log: log('log'), info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };

  const crypto = {
    getRandomValues<T extends ArrayBufferView>(array: T): T {
      if (!(array instanceof Int8Array || array instanceof Uint8Array || array instanceof Uint8ClampedArray || array instanceof Int16Array
        || array instanceof Uint16Array || array instanceof Int32Array || array instanceof Uint32Array
        || array instanceof BigInt64Array || array instanceof BigUint64Array)) throw new TypeError('getRandomValues needs an integer typed array');
      if (array.byteLength > 65536) throw new RangeError('getRandomValues: at most 65536 bytes');
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(random(array.byteLength));
      return array;
    },
    randomUUID(): string {
      const b = random(16);
      b[6] = (b[6]! & 0x0f) | 0x40;
      b[8] = (b[8]! & 0x3f) | 0x80;
      const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  };

  const timers = new Map<number, { fn: (...a: unknown[]) => void; args: unknown[] }>();
  let nextTimer = 0;
  // The guard hears of a refused timer once per entry into the isolate: code that catches the
  // RangeError and keeps trying would otherwise flood the boundary with one report per attempt.
  let timerRefusalReported = false;
  function setTimeout(fn: (...a: unknown[]) => void, ms = 0, ...args: unknown[]): number {
    if (typeof fn !== 'function') throw new TypeError('setTimeout needs a function');
    if (timers.size >= maxTimers) {
      if (!timerRefusalReported) notify('limit', stringify({ limit: 'timers', max: maxTimers }));
      timerRefusalReported = true;
      throw new RangeError(`too many pending timers (limit ${maxTimers})`);
    }
    const id = ++nextTimer;
    timers.set(id, { fn, args });
    arm(id, Math.min(Math.max(0, Number(ms) || 0), maxTimerMs));
    return id;
  }
  function clearTimeout(id: number): void {
    if (timers.delete(id)) disarm(id);
  }

  async function fetch(input: string | URL | Request, init?: { method?: string; headers?: HeadersInit; body?: unknown }): Promise<Response> {
    const req = new Request(input instanceof URL ? input.href : input, init);
    const raw = Body.peek(req);
    const body = raw === null ? null : typeof raw === 'string' ? utf8Encode(raw) : raw;
    const answer = await hostCall('fetch', { method: req.method, url: req.url, headers: [...req.headers.entries()] }, body);
    return new Response(answer.body, { status: answer.value.status, headers: answer.value.headers });
  }

  // ---- env bindings ---------------------------------------------------------
  const KV = {
    async get(key: string, type: 'text' | 'json' | 'arrayBuffer' | { type?: string } = 'text'): Promise<unknown> {
      const t = typeof type === 'string' ? type : type?.type ?? 'text';
      const { value } = await hostCall('kv.get', { key: String(key) });
      if (value === null) return null;
      return t === 'json' ? parse(value) : t === 'arrayBuffer' ? utf8Encode(value).buffer : value;
    },
    async put(key: string, value: string): Promise<void> {
      if (typeof value !== 'string') throw new TypeError('KV.put: value must be a string');
      await hostCall('kv.put', { key: String(key), value });
    },
    async delete(key: string): Promise<void> { await hostCall('kv.delete', { key: String(key) }); },
    async list(opts: { prefix?: string; limit?: number; cursor?: string } = {}): Promise<unknown> {
      return (await hostCall('kv.list', { prefix: String(opts.prefix ?? ''), limit: Number(opts.limit ?? 1000), cursor: opts.cursor ?? null })).value;
    },
  };
  const env: Record<string, unknown> = { ...parse(varsJson), KV };
  const ctx = {
    waitUntil(p: Promise<unknown>): void { Promise.resolve(p).catch((e) => console.error('waitUntil:', e)); },
    passThroughOnException(): void {},
  };

  const globals: Record<string, unknown> = {
    Headers, Request, Response, URL, URLSearchParams, TextEncoder, TextDecoder, console, crypto, setTimeout, clearTimeout, fetch,
    queueMicrotask: (fn: () => void) => { Promise.resolve().then(fn); },
    self: g,
  };
  for (const name of Object.keys(globals)) Object.defineProperty(g, name, { value: globals[name], writable: true, configurable: true, enumerable: false });

  let handler: { fetch: (req: Request, env: unknown, ctx: unknown) => unknown } | null = null;
  return {
    bind(namespace: any): void {
      const candidate = namespace?.default;
      if (!candidate || typeof candidate.fetch !== 'function') throw new TypeError('the module must `export default { fetch(request, env) { … } }`');
      handler = candidate;
    },
    async dispatch(head, body) {
      timerRefusalReported = false;
      if (!handler) throw new Error('no handler bound');
      const request = new Request(head.url, { method: head.method, headers: head.headers, body: body && body.length > 0 ? body : undefined });
      const response = await handler.fetch(request, env, ctx);
      if (!(response instanceof Response)) throw new TypeError('the fetch handler must return a Response');
      return readResponse(response);
    },
    settle(id, ok, value, body) {
      const waiter = pending.get(id);
      if (!waiter) return;
      pending.delete(id);
      if (ok) waiter.resolve({ value, body });
      else waiter.reject(new Error(String(value)));
    },
    fire(id) {
      timerRefusalReported = false;
      const timer = timers.get(id);
      if (!timer) return;
      timers.delete(id);
      try { timer.fn(...timer.args); } catch (e) { console.error('Uncaught in timer:', e); }
    },
  };
}
