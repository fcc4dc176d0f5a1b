import assert from 'node:assert/strict';
import { test } from 'node:test';
import { siteRoute, upstreamOf } from '../../src/control/front-door.js';
import type { Instance, Site, Tenant } from '../../src/store/types.js';

test('upstreamOf: own address takes the site port; a loopback service port wins; a forwarded guest port must match', () => {
  assert.deepEqual(upstreamOf({ address: '10.88.0.5' }, 8080), { host: '10.88.0.5', port: 8080 });
  assert.deepEqual(upstreamOf({ address: '127.0.0.1', port: 41000 }, 80), { host: '127.0.0.1', port: 41000 });
  assert.deepEqual(upstreamOf({ address: '127.0.0.1', port: 41000, guestPort: 80 }, 80), { host: '127.0.0.1', port: 41000 });
  assert.equal(upstreamOf({ address: '127.0.0.1', port: 41000, guestPort: 80 }, 8080), null);
  assert.equal(upstreamOf({ pid: 4 }, 80), null);
});

test('siteRoute: static roots stay under the tenant docroot; instance sites wait for a running instance', () => {
  const tenant: Tenant = { id: 'tn_1', name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 1 }, createdAt: '' };
  const site = (target: Site['target']): Site => ({ id: 'si_1', tenantId: 'tn_1', hostname: 'a.example', target, createdAt: '' });
  assert.deepEqual(siteRoute(site({ kind: 'static', root: 'www' }), tenant, null, '/data')?.target, { kind: 'static', root: '/data/docroots/acme/www' });
  const inst = { actualState: 'stopped', info: { address: '10.0.0.2' } } as unknown as Instance;
  assert.equal(siteRoute(site({ kind: 'instance', instance: 'web', port: 80 }), tenant, inst, '/data'), null);
  assert.deepEqual(siteRoute(site({ kind: 'instance', instance: 'web', port: 80 }), tenant, { ...inst, actualState: 'running' }, '/data')?.target,
    { kind: 'upstream', host: '10.0.0.2', port: 80 });
});
