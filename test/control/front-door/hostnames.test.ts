import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkDomainAssignment, checkSiteHostname, domainOf } from '../../../src/control/front-door/hostnames.js';

const code = (fn: () => void): string | null => {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as { code: string }).code;
  }
};

test('names inside a domain another tenant holds are refused, exact or wildcard, at any depth', () => {
  const domains = [{ tenantId: 'ta', name: 'ta.test' }];
  for (const name of ['ta.test', 'www.ta.test', 'a.b.ta.test', '*.ta.test', '*.x.ta.test']) {
    assert.equal(code(() => checkSiteHostname('ty', name, domains, [])), 'STRATA_ERR_HOSTNAME_NOT_YOURS', name);
    assert.equal(code(() => checkSiteHostname('ta', name, domains, [])), null, `${name} for its holder`);
  }
  // Only whole labels: 'eta.test' is not inside 'ta.test'.
  assert.equal(code(() => checkSiteHostname('ty', 'eta.test', domains, [])), null);
  // A wildcard over the domain is refused to others too.
  assert.equal(code(() => checkSiteHostname('ty', '*.test', domains, [])), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(domainOf('*.a.ta.test', [...domains, { tenantId: 'ta', name: 'a.ta.test' }])?.name, 'a.ta.test', 'the innermost');
});

test('outside held domains: first come, but a wildcard never covers another tenant\'s names, nor a name lands under another\'s wildcard', () => {
  const sites = [{ tenantId: 'ta', hostname: 'compat.ta.test' }, { tenantId: 'tb', hostname: '*.b.test' }];
  // The attack: ty's wildcards over ta's name.
  assert.equal(code(() => checkSiteHostname('ty', '*.ta.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(code(() => checkSiteHostname('ty', '*.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  // Under, or over, another tenant's wildcard.
  assert.equal(code(() => checkSiteHostname('ty', 'x.b.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(code(() => checkSiteHostname('ty', '*.x.b.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  // Under or above another tenant's name: a cookie crosses between them.
  assert.equal(code(() => checkSiteHostname('ty', '*.compat.ta.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(code(() => checkSiteHostname('ty', 'x.compat.ta.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(code(() => checkSiteHostname('ty', 'ta.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  assert.equal(code(() => checkSiteHostname('ty', 'b.test', [], sites)), 'STRATA_ERR_HOSTNAME_OVERLAP');
  // Siblings are unrelated.
  assert.equal(code(() => checkSiteHostname('ty', 'other.ta.test', [], sites)), null);
  // The tenant's own names never stand in its way; disjoint names are free (the demo's *.demo.localhost).
  assert.equal(code(() => checkSiteHostname('ta', '*.ta.test', [], sites)), null);
  assert.equal(code(() => checkSiteHostname('ty', '*.demo.localhost', [], sites)), null);
  assert.equal(code(() => checkSiteHostname('ty', 'other.test', [], sites)), null);
});

test('a domain is assigned only where nobody else holds it, around it or inside it, and no other tenant has a site there', () => {
  const domains = [{ tenantId: 'ta', name: 'ta.test' }];
  assert.equal(code(() => checkDomainAssignment('ty', 'ta.test', domains, [])), 'STRATA_ERR_DOMAIN_TAKEN');
  assert.equal(code(() => checkDomainAssignment('ty', 'shop.ta.test', domains, [])), 'STRATA_ERR_DOMAIN_TAKEN');
  assert.equal(code(() => checkDomainAssignment('ty', 'test', domains, [])), 'STRATA_ERR_DOMAIN_TAKEN');
  assert.equal(code(() => checkDomainAssignment('ta', 'shop.ta.test', domains, [])), null, 'nested in its own');
  const sites = [{ tenantId: 'ty', hostname: 'www.y.test' }, { tenantId: 'tz', hostname: '*.z.test' }, { tenantId: 'tx', hostname: 'top.test' }];
  assert.equal(code(() => checkDomainAssignment('ta', 'y.test', [], sites)), 'STRATA_ERR_DOMAIN_IN_USE');
  assert.equal(code(() => checkDomainAssignment('ta', 'a.z.test', [], sites)), 'STRATA_ERR_DOMAIN_IN_USE', 'a wildcard of another covers it');
  assert.equal(code(() => checkDomainAssignment('ta', 'in.top.test', [], sites)), 'STRATA_ERR_DOMAIN_IN_USE', 'under another tenant\'s name');
  assert.equal(code(() => checkDomainAssignment('ty', 'y.test', [], sites)), null, 'its own sites');
  assert.equal(code(() => checkDomainAssignment('ta', 'free.test', [], sites)), null);
});
