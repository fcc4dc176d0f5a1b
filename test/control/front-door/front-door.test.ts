import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropDanglingReferences, siteRoute, upstreamOf, withNeutralDefault } from '../../../src/control/front-door/front-door.js';
import type { Instance, Site, Tenant } from '../../../src/store/types.js';

test('upstreamOf: own address takes the site port; a loopback service port wins; a forwarded guest port must match', () => {
  assert.deepEqual(upstreamOf({ address: '10.88.0.5' }, 8080), { host: '10.88.0.5', port: 8080 });
  assert.deepEqual(upstreamOf({ address: '127.0.0.1', port: 41000 }, 80), { host: '127.0.0.1', port: 41000 });
  assert.deepEqual(upstreamOf({ address: '127.0.0.1', port: 41000, guestPort: 80 }, 80), { host: '127.0.0.1', port: 41000 });
  assert.equal(upstreamOf({ address: '127.0.0.1', port: 41000, guestPort: 80 }, 8080), null);
  assert.equal(upstreamOf({ pid: 4 }, 80), null);
});

test('siteRoute: static roots stay under the tenant docroot; an instance site is routed whatever its instance is doing', () => {
  const tenant: Tenant = { id: 'tn_1', name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 1 }, revision: 1, createdAt: '' };
  const site = (target: Site['target']): Site => ({
    id: 'si_1', tenantId: 'tn_1', hostname: 'a.example', target, instanceId: target.kind === 'instance' ? 'in_1' : null, listeners: null, revision: 1, createdAt: '',
  });
  assert.deepEqual(siteRoute(site({ kind: 'static', root: 'www' }), tenant, null, '/data')?.target, { kind: 'static', root: '/data/docroots/tn_1/www' });
  const web = site({ kind: 'instance', instance: 'web', port: 80 });
  const inst = { id: 'in_1', actualState: 'running', desiredState: 'running', info: { address: '10.0.0.2' } } as unknown as Instance;
  const target = (i: Partial<Instance> | null) => siteRoute(web, tenant, i === null ? null : { ...inst, ...i }, '/data').target;
  assert.deepEqual(target({}), { kind: 'upstream', host: '10.0.0.2', port: 80 });
  // Held but not served: 503 with how long to wait; someone must act on a paused (frozen) or stopped one.
  assert.deepEqual(target({ actualState: 'paused', desiredState: 'paused' }), { kind: 'unavailable', status: 503, retryAfter: 30 });
  assert.deepEqual(target({ actualState: 'paused', desiredState: 'running' }), { kind: 'unavailable', status: 503, retryAfter: 30 }, 'frozen by the guard');
  assert.deepEqual(target({ actualState: 'stopped', desiredState: 'stopped' }), { kind: 'unavailable', status: 503, retryAfter: 30 });
  assert.deepEqual(target({ actualState: 'stopped', desiredState: 'running' }), { kind: 'unavailable', status: 503, retryAfter: 5 }, 'starting');
  assert.deepEqual(target({ actualState: 'creating' }), { kind: 'unavailable', status: 503, retryAfter: 5 });
  assert.deepEqual(target({ actualState: 'failed' }), { kind: 'unavailable', status: 503, retryAfter: 5 });
  assert.deepEqual(target({ info: {} }), { kind: 'unavailable', status: 503, retryAfter: 5 }, 'running, no address yet');
  // Gone: the neutral 404, still holding the name.
  assert.deepEqual(target(null), { kind: 'unavailable', status: 404 });
});

test('dropDanglingReferences: a binding keeps the listeners that exist; a site bound to none that exists is served nowhere; a default site not served on its listener is dropped', () => {
  const listeners = [
    { id: 'a', address: '127.0.0.1', port: 1, protocol: 'http' as const, defaultSite: 'one.test' },
    { id: 'b', address: '127.0.0.2', port: 1, protocol: 'http' as const, defaultSite: 'two.test' },
  ];
  const target = { kind: 'redirect' as const, to: 'https://x.test/', status: 302 as const };
  const { sites, listeners: fixed } = dropDanglingReferences([
    { hostname: 'one.test', tenantId: 't', target, listeners: ['a', 'gone'] },
    { hostname: 'two.test', tenantId: 't', target, listeners: ['gone'] },
    { hostname: 'all.test', tenantId: 't', target },
  ], listeners);
  assert.deepEqual(sites.map((s) => [s.hostname, s.listeners]), [['one.test', ['a']], ['all.test', undefined]]);
  assert.equal(fixed[0]!.defaultSite, 'one.test');
  assert.equal(fixed[1]!.defaultSite, undefined, 'two.test is served nowhere, so not b\'s default');
});

test('withNeutralDefault: https listeners get the neutral certificate unless strict or given one; others are untouched', () => {
  const neutral = { id: 'n', hostnames: [], certPem: '', keyPem: '', tenantId: null };
  const out = withNeutralDefault([
    { id: 'h', address: '127.0.0.1', port: 1, protocol: 'https' },
    { id: 's', address: '127.0.0.1', port: 2, protocol: 'https', strictSni: true },
    { id: 'p', address: '127.0.0.1', port: 3, protocol: 'http' },
  ], neutral);
  assert.deepEqual(out.map((l) => l.defaultCertificate), ['n', undefined, undefined]);
  assert.equal(withNeutralDefault([{ id: 'h', address: '127.0.0.1', port: 1, protocol: 'https' }], null)[0]!.defaultCertificate, undefined);
});
