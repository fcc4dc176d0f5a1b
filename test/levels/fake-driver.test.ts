/** The conformance suite against the in-memory fake: once with every operation, once with none of the optional ones (as `env`). */
import { driverConformance } from './conformance.js';
import { FakeDriver } from '../support/fake-driver.js';

driverConformance('os.fake (all operations)', async () => new FakeDriver({ level: 'os', supports: ['pause', 'resume', 'snapshot', 'restore', 'clone', 'move', 'logs', 'exec'] }));
driverConformance('env.fake (no pause, resume, snapshot, restore)', async () => new FakeDriver({ level: 'env', supports: [] }));
driverConformance('vm.fake (unavailable here)', async () => new FakeDriver({ level: 'vm', availability: { available: false, reason: 'no hypervisor' } }));
