/** The QMP client against a fake QMP server on a Unix socket: greeting, negotiation, id matching, errors, events, timeouts, close. */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { QmpClient, QmpClosedError, QmpCommandError, QmpTimeoutError } from '../../../src/levels/vm/qmp.js';
import { tempDir } from '../../support/temp.js';

interface Fake {
  server: Server;
  path: string;
  /** Every command the fake received, in order. */
  received: Array<{ execute: string; id?: number; arguments?: unknown }>;
  sockets: Socket[];
}

/** A QMP server that greets, answers qmp_capabilities, and hands other commands to `answer` (which may answer out of order or never). */
async function fakeQmp(dir: string, answer: (cmd: { execute: string; id?: number; arguments?: unknown }, socket: Socket) => void): Promise<Fake> {
  const path = join(dir, `qmp-${Math.random().toString(36).slice(2)}.sock`);
  const fake: Fake = { server: createServer(), path, received: [], sockets: [] };
  fake.server.on('connection', (socket) => {
    fake.sockets.push(socket);
    socket.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: ['oob'] } })}\r\n`);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buffer.slice(0, nl)) as { execute: string; id?: number };
        buffer = buffer.slice(nl + 1);
        fake.received.push(cmd);
        if (cmd.execute === 'qmp_capabilities') socket.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);
        else answer(cmd, socket);
      }
    });
  });
  await new Promise<void>((resolve) => fake.server.listen(path, resolve));
  return fake;
}

const send = (socket: Socket, message: unknown): boolean => socket.write(`${JSON.stringify(message)}\r\n`);

describe('QMP client', () => {
  let dir: string;
  before(async () => { dir = tempDir('qmp'); });

  test('negotiates capabilities first, then matches answers to commands by id, even out of order', async () => {
    const held: Array<{ id?: number; execute: string }> = [];
    const fake = await fakeQmp(dir, (cmd, socket) => {
      held.push(cmd);
      if (held.length === 2) for (const c of held.reverse()) send(socket, { return: { echo: c.execute }, id: c.id });
    });
    const client = await QmpClient.connect(fake.path);
    try {
      assert.deepEqual((client.greeting.QMP as { version: { qemu: { major: number } } }).version.qemu.major, 7);
      assert.equal(fake.received[0]?.execute, 'qmp_capabilities');
      const [a, b] = await Promise.all([client.execute('query-status'), client.execute('query-version')]);
      assert.deepEqual(a, { echo: 'query-status' });
      assert.deepEqual(b, { echo: 'query-version' });
      assert.notEqual(fake.received[1]?.id, fake.received[2]?.id);
    } finally {
      client.close();
      fake.server.close();
    }
  });

  test('passes arguments and turns QEMU errors into QmpCommandError with the class', async () => {
    const fake = await fakeQmp(dir, (cmd, socket) => send(socket, { error: { class: 'DeviceNotFound', desc: 'no such device' }, id: cmd.id }));
    const client = await QmpClient.connect(fake.path);
    try {
      await assert.rejects(client.execute('device_del', { id: 'nic9' }), (e: unknown) => {
        assert.ok(e instanceof QmpCommandError);
        assert.equal(e.qmpClass, 'DeviceNotFound');
        assert.equal(e.code, 'STRATA_ERR_DRIVER');
        return true;
      });
      assert.deepEqual(fake.received.at(-1)?.arguments, { id: 'nic9' });
    } finally {
      client.close();
      fake.server.close();
    }
  });

  test('delivers events to listeners and to waitForEvent, between answers', async () => {
    const fake = await fakeQmp(dir, (cmd, socket) => {
      send(socket, { event: 'STOP', timestamp: { seconds: 1, microseconds: 0 } });
      send(socket, { return: {}, id: cmd.id });
      send(socket, { event: 'MIGRATION', data: { status: 'completed' } });
    });
    const client = await QmpClient.connect(fake.path);
    try {
      const seen: string[] = [];
      client.onEvent((e) => seen.push(e.event));
      const migrated = client.waitForEvent('MIGRATION', 2_000, (e) => e.data?.status === 'completed');
      await client.execute('stop');
      assert.deepEqual((await migrated).data, { status: 'completed' });
      assert.deepEqual(seen, ['STOP', 'MIGRATION']);
    } finally {
      client.close();
      fake.server.close();
    }
  });

  test('times out a command that gets no answer, and an event that never comes', async () => {
    const fake = await fakeQmp(dir, () => undefined);
    const client = await QmpClient.connect(fake.path);
    try {
      await assert.rejects(client.execute('query-status', undefined, 50), QmpTimeoutError);
      await assert.rejects(client.waitForEvent('SHUTDOWN', 50), QmpTimeoutError);
    } finally {
      client.close();
      fake.server.close();
    }
  });

  test('rejects pending commands when the server goes away, and later ones at once', async () => {
    const fake = await fakeQmp(dir, (_cmd, socket) => socket.destroy());
    const client = await QmpClient.connect(fake.path);
    try {
      await assert.rejects(client.execute('quit'), QmpClosedError);
      await client.closed;
      assert.equal(client.isClosed, true);
      await assert.rejects(client.execute('query-status'), QmpClosedError);
    } finally {
      fake.server.close();
    }
  });

  test('retries a socket that is not there yet, and gives up after retryForMs', async () => {
    const path = join(dir, 'late.sock');
    const connecting = QmpClient.connect(path, { retryForMs: 2_000 });
    await new Promise((r) => setTimeout(r, 100));
    const fake = await fakeQmp(dir, () => undefined);
    const late = createServer((s) => fake.server.emit('connection', s));
    await new Promise<void>((resolve) => late.listen(path, resolve));
    const client = await connecting;
    client.close();
    late.close();
    fake.server.close();
    await assert.rejects(QmpClient.connect(join(dir, 'never.sock'), { retryForMs: 100 }), QmpClosedError);
  });

  test('a peer that is not QMP fails the connect', async () => {
    const path = join(dir, 'http.sock');
    const server = createServer((s) => s.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await assert.rejects(QmpClient.connect(path, { timeoutMs: 500 }), QmpClosedError);
    } finally {
      server.close();
    }
  });
});
