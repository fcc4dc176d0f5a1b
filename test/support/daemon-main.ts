/**
 * A daemon with the fake driver as a child process, for tests that kill it
 * (`node dist/test/support/daemon-main.js DATA_DIR`). Prints `{"url": …}` once listening.
 */
import pino from 'pino';
import { startDaemon } from '../../src/daemon.js';
import { FakeDriver } from './fake-driver.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: daemon-main.js DATA_DIR');
const d = await startDaemon({
  dataDir, host: '127.0.0.1', port: 0, drivers: [new FakeDriver({ level: 'os' })], logger: pino({ level: 'silent' }),
});
process.stdout.write(`${JSON.stringify({ url: d.url })}\n`);
process.on('SIGTERM', () => void d.close().then(() => process.exit(0)));
