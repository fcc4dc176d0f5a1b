/**
 * What a level's driver does not list in `supports` the API refuses with 422
 * STRATA_ERR_UNSUPPORTED before anything starts — even where the driver object
 * happens to have the method: the listed operations are the one word on what a
 * level can do (the conformance suite checks drivers list exactly what they have).
 */
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { ExecSession } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

/** Has logs, exec, console and move methods that would work, but lists none of them. */
class UnlistedFake extends FakeDriver {
  calledFor: string[] = [];
  constructor() {
    super({ level: 'os', supports: ['pause', 'resume'] });
  }
  async logs(): Promise<Readable> {
    this.calledFor.push('logs');
    return Readable.from(['hello\n']);
  }
  async exec(): Promise<ExecSession> {
    this.calledFor.push('exec');
    return { stdin: new PassThrough(), stdout: Readable.from([]), stderr: null, resize: () => undefined, kill: () => undefined, exit: Promise.resolve(0) };
  }
  async console(): Promise<PassThrough> {
    this.calledFor.push('console');
    return new PassThrough();
  }
  async moveIn(): Promise<void> {
    this.calledFor.push('moveIn');
  }
  async moveOut(): Promise<void> {
    this.calledFor.push('moveOut');
  }
}

let d: TestDaemon;
const driver = new UnlistedFake();
const reason = { 'x-strata-reason': 'unsupported operations test' };

before(async () => {
  d = await TestDaemon.start({ drivers: [driver] });
  assert.equal((await d.request('POST', '/v1/tenants', { body: { name: 'acme' } })).status, 201);
  const r = await d.request('POST', '/v1/tenants/acme/instances?wait=10', { headers: reason, body: { name: 'web', level: 'os', limits: { vcpus: 1, memoryMiB: 128 } } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.instance.state, 'running', JSON.stringify(r.body));
});
after(() => d.close());

const refused = (r: { status: number; body: any }, operation: string): void => {
  assert.equal(r.status, 422, `${operation}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, 'STRATA_ERR_UNSUPPORTED', operation);
};

test('logs, exec and console of a level that does not list them: 422 STRATA_ERR_UNSUPPORTED, the driver never asked', async () => {
  const base = '/v1/tenants/acme/instances/web';
  refused(await d.request('GET', `${base}/logs`, { headers: reason }), 'logs');
  refused(await d.request('GET', `${base}/exec?cmd=echo&cmd=hi`, { headers: reason }), 'exec');
  refused(await d.request('GET', `${base}/console`, { headers: reason }), 'console');
  assert.deepEqual(driver.calledFor, []);
});

test('move of an instance whose level does not list it: 422 STRATA_ERR_UNSUPPORTED, nothing sent', async () => {
  const r = await d.request('POST', '/v1/tenants/acme/instances/web/move', { headers: reason, body: { target: { url: 'http://127.0.0.1:9', token: 'any' } } });
  refused(r, 'move');
  assert.deepEqual(driver.calledFor, []);
});
