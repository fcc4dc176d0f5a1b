/**
 * `/metrics`: who may read it and what each reader sees. No token: 401; the
 * auditor: 403; a provider-admin and a `metrics-reader` (a scraper's role,
 * allowed nothing else): every series; a tenant's token: only series labelled
 * with its own tenant id — its instances, quota, alerts, certificates and
 * gateway sites — never another tenant's, nor the daemon's own. Per-instance
 * CPU, memory, network and disk carry tenant id, instance id and name. The
 * shipped Grafana dashboard and Prometheus alert rules use only series this
 * live daemon serves.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import type { InstanceUsage } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { until } from '../support/until.js';

/** The fake with usage: figures derived from the instance id, so each series is recognisable. */
class MeteredFake extends FakeDriver {
  async stats(id: string): Promise<InstanceUsage | null> {
    const n = id.length;
    return { cpuSeconds: 1.5, memoryBytes: 1000 + n, memoryLimitBytes: 64 * 1024 * 1024, netRxBytes: 10, netTxBytes: 20, diskBytes: 4096, pids: 1 };
  }
}

/** The configured scrape token (`strata up --metrics-token-file`). */
const SCRAPE_TOKEN = 'scrape-0123456789abcdef0123456789abcdef';
let d: TestDaemon;
let acme: string;
let rival: string;
let reader: string;
let auditor: string;
const ids: Record<string, string> = {};

const scrape = async (token: string | null): Promise<{ status: number; text: string }> => {
  const res = await fetch(`${d.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, text: await res.text() };
};
/** The sample lines of metric `name` (not HELP/TYPE). */
const samples = (text: string, name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

function get(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); }).on('error', reject).end();
  });
}

before(async () => {
  d = await TestDaemon.start({
    drivers: [new MeteredFake()], metricsScrapeToken: SCRAPE_TOKEN,
    gateway: { listeners: [{ id: 'http-0', address: '127.0.0.1', port: 0, protocol: 'http' }], options: { workers: 1 } },
  });
  acme = await d.tenantWithUser('acme', 'tenant-member');
  rival = await d.tenantWithUser('rival', 'tenant-admin');
  reader = await d.userToken('prometheus', 'metrics-reader');
  auditor = await d.userToken('the-auditor', 'auditor');
  for (const t of ['acme', 'rival']) {
    ids[t] = d.daemon.services.store.getTenantByName(t)!.id;
    const l = await d.request('POST', `/v1/tenants/${t}/instances?wait=10`, { body: { name: 'web', level: 'os' }, headers: { 'x-strata-reason': 'test' } });
    assert.equal(l.body.operation?.status, 'succeeded', JSON.stringify(l.body));
    const site = await d.request('POST', `/v1/tenants/${t}/sites`, { body: { hostname: `www.${t}.test`, target: { kind: 'static', root: 'www' } }, headers: { 'x-strata-reason': 'test' } });
    assert.equal(site.status, 201, JSON.stringify(site.body));
    mkdirSync(d.docroot(t, 'www'), { recursive: true });
    writeFileSync(d.docroot(t, 'www', 'index.html'), 'hi\n');
    const port = d.daemon.services.gateway!.addresses()[0]!.port;
    // The front door hands new sites to the gateway's workers in the background.
    await until(async () => (await get(port, `www.${t}.test`)) === 200, { what: `www.${t}.test to answer 200 through the gateway` });
    const cert = await d.request('POST', `/v1/tenants/${t}/certificates/local-ca`, { body: { hostnames: [`www.${t}.test`] }, headers: { 'x-strata-reason': 'test' } });
    assert.equal(cert.status, 201, JSON.stringify(cert.body));
  }
  // The guard publishes each alert on the event bus; one per tenant and one of the host's own.
  const events = d.daemon.services.events;
  events.publish('alert', 'guard.alert', ids.acme!, { rule: 'Shell in web instance', priority: 'critical' });
  events.publish('alert', 'guard.alert', ids.rival!, { rule: 'Crypto miner', priority: 'warning' });
  events.publish('alert', 'guard.alert', null, { rule: 'Strata binary changed', priority: 'critical' });
});

after(() => d.close());

test('no token: 401; the auditor: 403', async () => {
  assert.equal((await scrape(null)).status, 401);
  assert.equal((await scrape('st_nope.nope')).status, 401);
  assert.equal((await scrape(auditor)).status, 403);
});

test('a provider-admin reads every series: per instance, quota, alerts, certificates, operations, gateway, process', async () => {
  const { status, text } = await scrape(d.adminToken);
  assert.equal(status, 200);
  for (const t of ['acme', 'rival']) {
    const instanceId = d.daemon.services.store.getInstance(ids[t]!, 'web')!.id;
    const labels = `tenant_id="${ids[t]}",tenant="${t}",instance_id="${instanceId}",instance="web",level="os"`;
    assert.ok(samples(text, 'strata_instance_cpu_seconds_total').includes(`strata_instance_cpu_seconds_total{${labels}} 1.5`), text);
    assert.ok(samples(text, 'strata_instance_memory_bytes').includes(`strata_instance_memory_bytes{${labels}} ${1000 + instanceId.length}`));
    assert.ok(samples(text, 'strata_instance_memory_limit_bytes').includes(`strata_instance_memory_limit_bytes{${labels}} ${64 * 1024 * 1024}`));
    assert.ok(samples(text, 'strata_instance_network_receive_bytes_total').includes(`strata_instance_network_receive_bytes_total{${labels}} 10`));
    assert.ok(samples(text, 'strata_instance_network_transmit_bytes_total').includes(`strata_instance_network_transmit_bytes_total{${labels}} 20`));
    assert.ok(samples(text, 'strata_instance_disk_used_bytes').includes(`strata_instance_disk_used_bytes{${labels}} 4096`));
    assert.ok(samples(text, 'strata_tenant_quota_used').includes(`strata_tenant_quota_used{tenant_id="${ids[t]}",tenant="${t}",resource="instances"} 1`));
    assert.ok(samples(text, 'strata_tenant_quota_limit').some((l) => l.startsWith(`strata_tenant_quota_limit{tenant_id="${ids[t]}",tenant="${t}",resource="sites"} `)));
    assert.ok(samples(text, 'strata_certificate_expiry_timestamp_seconds').some((l) => l.includes(`tenant_id="${ids[t]}"`) && l.includes(`hostname="www.${t}.test"`)));
    assert.ok(samples(text, 'strata_gateway_requests_total').some((l) => l.includes(`site="www.${t}.test"`) && l.includes('class="2xx"') && / 1$/.test(l)));
  }
  assert.ok(samples(text, 'strata_guard_alerts_total').includes(`strata_guard_alerts_total{tenant_id="${ids.acme}",tenant="acme",rule="Shell in web instance",priority="critical"} 1`));
  assert.ok(samples(text, 'strata_guard_alerts_total').includes('strata_guard_alerts_total{tenant_id="",tenant="",rule="Strata binary changed",priority="critical"} 1'));
  assert.ok(samples(text, 'strata_operation_duration_seconds_count').some((l) => l.includes('kind="instance.create"') && l.includes('status="succeeded"')), 'operation durations');
  assert.ok(samples(text, 'strata_gateway_connections_active').length === 1, 'active gateway connections');
  assert.match(text, /^# TYPE strata_gateway_upstream_errors_total counter$/m);
  assert.match(text, /^process_cpu_user_seconds_total /m);
});

test('the configured scrape token reads every series and nothing else', async () => {
  const { status, text } = await scrape(SCRAPE_TOKEN);
  assert.equal(status, 200);
  assert.equal(samples(text, 'strata_instance_memory_bytes').length, 2);
  assert.match(text, /^process_cpu_user_seconds_total /m);
  assert.equal((await scrape(`${SCRAPE_TOKEN}x`)).status, 401);
  for (const path of ['/v1/tenants', '/v1/whoami', '/v1/stats']) assert.equal((await d.request('GET', path, { token: SCRAPE_TOKEN })).status, 401, path);
});

test('a metrics-reader reads the same series and may do nothing else', async () => {
  const { status, text } = await scrape(reader);
  assert.equal(status, 200);
  assert.ok(samples(text, 'strata_instance_memory_bytes').length === 2);
  assert.match(text, /^process_cpu_user_seconds_total /m);
  for (const path of ['/v1/tenants', '/v1/tenants/acme/instances', '/v1/info', '/v1/alerts', '/v1/stats']) {
    assert.equal((await d.request('GET', path, { token: reader })).status, 403, path);
  }
});

test("a tenant's token reads only its own tenant's series, never another's nor the daemon's", async () => {
  for (const [t, token, other] of [['acme', acme, 'rival'], ['rival', rival, 'acme']] as const) {
    const { status, text } = await scrape(token);
    assert.equal(status, 200, text);
    assert.ok(!text.includes(ids[other]!), `${t}'s scrape names no id of ${other}`);
    assert.ok(!text.includes(`${other}`), `${t}'s scrape names nothing of ${other}`);
    const labelled = text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(labelled.length > 0);
    for (const line of labelled) assert.ok(line.includes(`tenant_id="${ids[t]}"`) || line.includes(`tenant="${ids[t]}"`), `every sample is ${t}'s: ${line}`);
    assert.equal(samples(text, 'strata_instance_cpu_seconds_total').length, 1);
    assert.equal(samples(text, 'strata_tenant_quota_used').length, 5);
    assert.ok(samples(text, 'strata_gateway_requests_total').some((l) => l.includes(`site="www.${t}.test"`)));
    assert.equal(samples(text, 'strata_guard_alerts_total').length, 1, 'its own alert, not the host\'s');
    assert.equal(samples(text, 'strata_certificate_expiry_timestamp_seconds').length, 1);
    assert.doesNotMatch(text, /^process_|^strata_api_|^strata_audit_|^strata_operation|^strata_gateway_connections_active/m);
  }
});

const docs = (path: string): string => readFileSync(new URL(`../../../docs/${path}`, import.meta.url), 'utf8');
/** Strata's, the process's and Node's series a PromQL expression names. */
const seriesIn = (expr: string): string[] => [...expr.matchAll(/\b(?:strata|process|nodejs)_[a-z0-9_]+\b/g)].map((m) => m[0]);

test('every series docs/grafana/strata.json and docs/prometheus/alerts.yml use is served', async () => {
  const { text } = await scrape(d.adminToken);
  const families = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const served = (name: string): boolean => {
    if (families.has(name)) return true;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && families.get(base) === 'histogram';
  };

  const dashboard = JSON.parse(docs('grafana/strata.json')) as { uid: string; panels: Array<{ id: number; type: string; targets?: Array<{ expr: string }> }>; templating: { list: Array<{ definition?: string }> } };
  assert.equal(dashboard.uid, 'strata-overview');
  const panelIds = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(panelIds).size, panelIds.length, 'panel ids are unique');
  const dashboardExprs = [
    ...dashboard.panels.flatMap((p) => (p.type === 'row' ? [] : (assert.ok(p.targets?.length, `panel ${p.id} has a query`), p.targets!.map((t) => t.expr)))),
    ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : [])),
  ];

  const rules = parse(docs('prometheus/alerts.yml')) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; labels: { severity: string }; annotations: { summary: string } }> }> };
  const alertExprs: string[] = [];
  for (const g of rules.groups) {
    for (const r of g.rules) {
      assert.ok(r.alert && r.expr && r.annotations?.summary, `${g.name}: a rule with a name, an expression and a summary`);
      assert.ok(['critical', 'warning', 'info'].includes(r.labels?.severity), `${r.alert}: a severity`);
      alertExprs.push(r.expr);
    }
  }

  for (const [file, exprs] of [['grafana/strata.json', dashboardExprs], ['prometheus/alerts.yml', alertExprs]] as const) {
    const used = new Set(exprs.flatMap(seriesIn));
    assert.ok(used.size >= 10, `${file} uses the series (${[...used].join(', ')})`);
    const missing = [...used].filter((name) => !served(name));
    assert.deepEqual(missing, [], `${file}: series the daemon does not serve`);
  }
});
