/** The shared driver conformance suite against the real env driver (isolate hosts and all). */
import { join } from 'node:path';
import { EnvDriver } from '../../../src/levels/env/index.js';
import { driverConformance } from '../conformance.js';
import { HELLO, specFor } from './helpers.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('env-conf');

driverConformance('env.isolate', async () => new EnvDriver({ stateDir: dir }), {
  spec: (id) => specFor(id, 'conformance', HELLO),
});
