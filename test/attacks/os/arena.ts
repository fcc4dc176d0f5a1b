/**
 * The arena of the os breakout suite: two tenants on one driver — `evil`, whose
 * container runs the attacks, and `good`, whose container serves HTTP and keeps a
 * secret on its volume — plus two HTTP services on the host: one on a port the
 * firewall lets instances reach (as it does the gateway's) and one it must not.
 *
 * Both containers run the suite's own image: busybox plus `probe`, a static C
 * program (probe.c) that makes one real attack per call and prints OK or DENIED.
 * `close()` removes everything, also after a failure.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InstanceSpec } from '../../../src/levels/driver.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { run } from '../../../src/levels/os/exec.js';
import { ImageStore } from '../../../src/levels/os/images.js';
import type { ExecResult } from '../../../src/levels/os/runtime.js';
import { builtinImages, leftovers, nothingLeft, spec, testDriverOptions, waitFor200 } from '../../levels/os/helpers.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const ATTACK_IMAGE = 'attack';
export const PROBE = '/bin/probe';

export interface Launched {
  id: string;
  address: string;
  port: number;
  pid: number;
}

export class Arena {
  readonly secret = `SECRET-${randomBytes(8).toString('hex')}`;
  driver!: OsDriver;
  evil!: Launched;
  good!: Launched;
  /** A host service instances may reach (listed in hostPorts) and one they may not. */
  allowedPort = 0;
  blockedPort = 0;
  readonly #servers: Server[] = [];
  readonly #made = new Set<string>();
  readonly #imagesDir: string;
  #n = 0;

  constructor(readonly slot: number) {
    this.#imagesDir = `/var/lib/strata-test/images-${slot}`;
  }

  get options(): ReturnType<typeof testDriverOptions> {
    return testDriverOptions(this.slot, { imagesDir: this.#imagesDir, hostPorts: [this.allowedPort] });
  }

  async open(): Promise<void> {
    this.allowedPort = await this.#hostService('allowed host service');
    this.blockedPort = await this.#hostService('private host service');
    await this.#buildImage();
    this.driver = new OsDriver(this.options);
    const availability = await this.driver.provision();
    assert.ok(availability.available, availability.reason);
    this.good = await this.launch('good', { config: { volumeMiB: 16 } });
    await this.driver.run(this.good.id, ['sh', '-c', `echo ${this.secret} > /data/secret; chmod 600 /data/secret`]);
    this.evil = await this.launch('evil', { config: { volumeMiB: 32 }, limits: { vcpus: 0.5, memoryMiB: 64, diskMiB: 64 } });
  }

  /** Creates and starts an instance of the attack image; it is deleted by `close`. */
  async launch(tenant: string, overrides: Partial<InstanceSpec> = {}): Promise<Launched> {
    const id = `atk-${this.slot}-${process.pid}-${++this.#n}`;
    this.#made.add(id);
    await this.driver.create(spec(id, tenant, { source: ATTACK_IMAGE, ...overrides }));
    await this.driver.start(id);
    const { address, port } = await this.driver.address(id);
    const seen = await this.driver.inspect(id);
    const launched = { id, address, port: port ?? 8080, pid: Number(seen?.info?.pid) };
    if (!overrides.config || !('args' in overrides.config)) await waitFor200(address, launched.port);
    return launched;
  }

  async remove(id: string): Promise<void> {
    await this.driver.stop(id, { graceMs: 200 }).catch(() => undefined);
    await this.driver.delete(id);
    this.#made.delete(id);
  }

  /** Runs a shell script as root inside the attacker's container; its stderr is merged into stdout. */
  sh(script: string, timeoutMs = 20_000, target = this.evil.id): Promise<ExecResult> {
    return this.driver.run(target, ['sh', '-c', `exec 2>&1\n${script}`], { timeoutMs });
  }

  /** Runs one probe attack in the attacker's container; returns its one-line verdict. */
  async probe(attack: string, arg = '', target = this.evil.id): Promise<string> {
    const result = await this.driver.run(target, [PROBE, attack, ...(arg ? [arg] : [])]);
    return `${result.stdout}${result.stderr}`.trim();
  }

  /** The other tenant still serves, from the same process it had before the attack. */
  async assertVictimUnharmed(): Promise<void> {
    const answer = await waitFor200(this.good.address, this.good.port, 5_000);
    assert.equal(answer.body, 'busybox ok\n');
    const seen = await this.driver.inspect(this.good.id);
    assert.equal(seen?.state, 'running');
    assert.equal(Number(seen?.info?.pid), this.good.pid, "the victim's process was replaced");
    const secret = await this.driver.run(this.good.id, ['cat', '/data/secret']);
    assert.equal(secret.stdout.trim(), this.secret, "the victim's data changed");
  }

  async close(): Promise<void> {
    if (this.driver) {
      for (const id of [...this.#made]) await this.remove(id).catch(() => undefined);
      await this.driver.cleanup();
    }
    for (const server of this.#servers) server.close();
    await rm(this.#imagesDir, { recursive: true, force: true });
    const found = await leftovers(this.options);
    await rm(this.options.stateDir!, { recursive: true, force: true });
    assert.ok(nothingLeft(found), `leftovers: ${JSON.stringify(found)}`);
  }

  async #hostService(body: string): Promise<number> {
    const server = createServer((_req, res) => res.end(body));
    this.#servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    return (server.address() as AddressInfo).port;
  }

  /** The busybox image plus the statically linked probe, in this arena's own image store. */
  async #buildImage(): Promise<void> {
    await builtinImages();
    const busybox = await new ImageStore('/var/lib/strata/images').resolve('busybox');
    const store = new ImageStore(this.#imagesDir);
    const staging = await store.stage();
    await rm(join(staging, 'rootfs'), { recursive: true });
    await run('cp', ['-a', busybox.rootfs, join(staging, 'rootfs')]);
    const binary = join(staging, 'probe');
    await run('gcc', ['-static', '-O2', '-o', binary, join(repoRoot, 'test/attacks/os/probe.c')]);
    await copyFile(binary, join(staging, 'rootfs', PROBE));
    await rm(binary);
    await store.commit(staging, ATTACK_IMAGE, 'test:attack', busybox.manifest.config);
  }
}
