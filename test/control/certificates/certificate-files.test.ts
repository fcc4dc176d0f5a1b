/**
 * Certificate file sets: the key found on disk is the one that matches the
 * chain in the store — also after a crash between writing a renewed key and
 * committing its chain — and a certificate is served only for names that are
 * still its tenant's sites.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CertificateFiles } from '../../../src/control/certificates/certificates.js';
import { LocalCa } from '../../../src/control/certificates/local-ca.js';
import { issuedFacts } from '../../../src/control/certificates/x509.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('cert-files');

test('a renewed key written but not committed: the store\'s chain is still served, with its own key', async () => {
  const store = new SqliteStore(join(dir, 'strata.db'));
  const t = store.createTenant({ name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 5 } });
  store.createSite({ tenantId: t.id, hostname: 'a.test', target: { kind: 'static', root: 'www' } });
  store.createSite({ tenantId: t.id, hostname: 'b.test', target: { kind: 'static', root: 'www' } });
  const ca = await LocalCa.open(join(dir, 'ca'));
  const first = await ca.issue(['a.test', 'b.test']);
  const facts = issuedFacts(first.certPem);
  const cert = store.createCertificate({ tenantId: t.id, hostnames: ['a.test', 'b.test'], source: 'local-ca', status: 'active', challenge: null, ...facts });
  new CertificateFiles(dir, store).write(cert.id, facts.certPem, first.keyPem, facts.fingerprint);
  assert.equal(statSync(join(dir, 'certs', cert.id, 'key.pem')).mode & 0o777, 0o600);

  // The renewal's files land, then the daemon dies before the store commits.
  const second = await ca.issue(['a.test', 'b.test']);
  new CertificateFiles(dir, store).write(cert.id, second.certPem, second.keyPem, issuedFacts(second.certPem).fingerprint);
  const [served] = new CertificateFiles(dir, store).gatewayCertificates();
  assert.equal(served!.certPem, facts.certPem);
  assert.equal(served!.keyPem, first.keyPem);

  // A site that goes away is no longer answered with this certificate.
  store.deleteSite(store.getSite('b.test')!.id);
  assert.deepEqual(new CertificateFiles(dir, store).gatewayCertificates()[0]!.hostnames, ['a.test']);
  store.close();
});
