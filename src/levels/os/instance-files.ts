/**
 * Where an os instance lives on the host, and what it was created as: its record
 * (`<stateDir>/instances/<id>/instance.json`, written last: its presence means
 * "created"), and the paths of its state and of its mounts while it runs.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { notFound } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import type { InstanceSpec } from '../driver.js';
import type { OsInstanceConfig } from './instance-config.js';
import { readJson, writeJsonAtomic } from './state-file.js';

/** Where the data volume appears inside the container. */
export const VOLUME_MOUNT_POINT = '/data';

export interface InstanceRecord {
  spec: InstanceSpec;
  config: OsInstanceConfig;
  image: string;
  imageDigest: string;
  lower: string;
  hostId: number;
  tenantIndex: number;
  address: string;
  gateway: string;
  port: number | null;
  hostVeth: string;
  cgroupsPath: string;
  createdAt: string;
  /**
   * What a change made while the container runs is for: the record of its next
   * start (see `reconfigure.ts`). Until then this record stays what runs (its
   * port is where the gateway reaches it).
   */
  next?: InstanceRecord;
}

const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export class InstanceFiles {
  constructor(readonly stateDir: string, readonly runRoot: string) {}

  /** The instance's state dir; throws on an id that could leave `instances/`. */
  dir(id: string): string {
    if (!INSTANCE_ID.test(id)) throw validationError('id', `'${id}' is not a valid instance id`);
    return join(this.stateDir, 'instances', id);
  }

  /** Where the instance's root is mounted while it runs (outside the state dir, which may be private). */
  rootfsDir(id: string): string {
    return join(this.runRoot, 'rootfs', id);
  }

  volumeDir(id: string): string {
    return join(this.runRoot, 'volumes', id);
  }

  /** The current log file of an instance (older ones are `.1`, `.2` …). */
  logPath(id: string): string {
    return join(this.dir(id), 'console.log');
  }

  /** The record, or null when the instance was never (completely) created. */
  find(id: string): Promise<InstanceRecord | null> {
    return readJson<InstanceRecord>(join(this.dir(id), 'instance.json'));
  }

  async record(id: string): Promise<InstanceRecord> {
    const record = await this.find(id);
    if (!record) throw notFound('instance', id);
    return record;
  }

  /** The record a start runs from: a change kept for the next start (`next`) becomes the record. */
  async forStart(id: string): Promise<InstanceRecord> {
    const record = await this.record(id);
    if (!record.next) return record;
    await writeJsonAtomic(join(this.dir(id), 'instance.json'), record.next);
    return record.next;
  }

  /** Ids of every instance with a state dir. */
  async ids(): Promise<string[]> {
    try {
      return (await readdir(join(this.stateDir, 'instances'))).filter((n) => INSTANCE_ID.test(n));
    } catch {
      return [];
    }
  }
}
