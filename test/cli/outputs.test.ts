/**
 * `strata output` against a real daemon: add a webhook (the secret printed
 * once), a syslog and a file output; list and show (no secret); test through
 * a live receiver and through a dead one (exit 1, one line); delete; usage
 * mistakes exit 2.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { verifyWebhook } from '../../src/guard/outputs/webhook.js';
import { runStrata, type CliRun } from '../support/cli.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';
import { Receiver } from '../guard/outputs-fixtures.js';

let d: TestDaemon;
let home: string;
let rx: Receiver;

const strata = (args: string[], token = d.adminToken): Promise<CliRun> => runStrata(args, { url: d.url, token, home });

before(async () => {
  home = tempDir('cli-outputs');
  rx = await Receiver.start();
  d = await TestDaemon.start({ outputs: { allowPrivateTargets: true } });
});
after(async () => {
  await d.close();
  await rx.close();
});

test('output add/list/show/test/delete', async () => {
  const added = await strata(['output', 'add', 'hook', '--webhook', rx.url, '--min-priority', 'warning', '--rule', 'A', '--rule', 'B', '--header', 'Authorization: Bearer x']);
  assert.equal(added.code, 0, added.stderr);
  const secret = /secret: (whsec_\S+)/.exec(added.stdout)?.[1];
  assert.ok(secret, added.stdout);
  assert.match(added.stdout, /rules:\s+A, B/);
  assert.equal((await strata(['output', 'add', 'logs', '--syslog', 'logs.example:1514', '--tcp', '--format', 'text'])).code, 0);
  assert.equal((await strata(['output', 'add', 'file', '--file', 'all.jsonl'])).code, 0);

  const list = await strata(['output', 'list']);
  assert.equal(list.code, 0);
  assert.match(list.stdout, /hook\s+webhook/);
  assert.match(list.stdout, /logs\s+syslog\s+tcp:\/\/logs\.example:1514/);
  assert.match(list.stdout, /file\s+file\s+alerts\/all\.jsonl/);
  const show = await strata(['output', 'show', 'hook', '--json']);
  assert.equal(show.code, 0);
  assert.ok(!show.stdout.includes(secret));
  assert.equal(JSON.parse(show.stdout).config.headers.Authorization, '[redacted]', "a header's value is never shown");

  const t = await strata(['output', 'test', 'hook']);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /delivered/);
  assert.ok(verifyWebhook(secret, rx.received.at(-1)!.headers, rx.received.at(-1)!.body));
  assert.equal(rx.received.at(-1)!.headers.authorization, 'Bearer x');

  assert.equal((await strata(['output', 'add', 'dead', '--webhook', 'http://127.0.0.1:1/', '--retries', '0'])).code, 0);
  const failed = await strata(['output', 'test', 'dead']);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /^strata: test alert not delivered through dead: .*\n$/);

  for (const name of ['hook', 'logs', 'file', 'dead']) assert.equal((await strata(['output', 'delete', name])).code, 0);
  assert.equal((await strata(['output', 'show', 'hook'])).code, 1);
  const usage = await strata(['output', 'add', 'x', '--webhook', rx.url, '--file', 'y']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /exactly one of/);
});
