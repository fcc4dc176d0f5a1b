/** The shared driver conformance suite against the real env driver (isolate hosts and all). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { EnvDriver } from '../../../src/levels/env/index.js';
import { driverConformance } from '../conformance.js';
import { HELLO, specFor } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-env-conf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

driverConformance('env.isolate', async () => new EnvDriver({ stateDir: dir }), {
  spec: (id) => specFor(id, 'conformance', HELLO),
});
