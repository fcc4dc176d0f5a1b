/**
 * What route handlers may use: the daemon's services, handed in explicitly so a
 * test can build the API over any store and any drivers.
 */
import type { Registry } from 'prom-client';
import type { Gateway } from '../gateway/index.js';
import type { Guard } from '../guard/guard.js';
import type { AlertOutputs } from '../guard/outputs/service.js';
import type { CertificateManager } from '../control/certificates/certificate-manager.js';
import type { FrontDoor } from '../control/front-door/front-door.js';
import type { Forwards } from '../control/moves/forwards.js';
import type { Mover } from '../control/moves/move.js';
import type { Receiver } from '../control/moves/receive.js';
import type { AuditLog } from '../audit/log.js';
import type { Authenticator } from '../auth/authenticate.js';
import type { EventBus } from '../core/events.js';
import type { InstanceService } from '../control/lifecycle/instances.js';
import type { TenantData } from '../control/tenants/tenant-data.js';
import type { FileCopies } from '../control/files/files.js';
import type { OperationRunner } from '../control/lifecycle/operations.js';
import type { UsageSampler } from '../control/usage/sampler.js';
import type { MetricsTally } from './metrics.js';
import type { DriverRegistry } from '../levels/registry.js';
import type { Store } from '../store/store.js';
import type { Backups } from '../control/backup/backup.js';

export interface Services {
  version: string;
  startedAt: Date;
  store: Store;
  audit: AuditLog;
  auth: Authenticator;
  events: EventBus;
  operations: OperationRunner;
  registry: DriverRegistry;
  instances: InstanceService;
  /** Instances' CPU, memory, network and disk use, from their drivers. */
  usage: UsageSampler;
  metrics: Registry;
  /** Alert and operation tallies for /metrics, fed by the event bus. */
  tally: MetricsTally;
  /** A configured secret that reads every series of /metrics and nothing else (absent: only tokens of the store). */
  scrapeToken?: string;
  /** The front door, when the daemon runs one: its per-site metrics join /metrics. */
  gateway?: Gateway;
  /** The security monitor: its alerts are served at /v1/alerts. */
  guard: Guard;
  /** Where alerts are delivered (webhook, syslog, file); absent when a test builds the API without a daemon. */
  outputs?: AlertOutputs;
  /** Certificates: uploads, the local CA, ACME and renewal (absent when a test builds the API without a daemon). */
  certificates?: CertificateManager;
  /** The front door's fixed listeners (`strata up --listen`), listed beside the API's own. */
  frontDoor?: FrontDoor;
  /** What tenants hold outside the store (docroots, logs, drivers' files): dropped when one is deleted (absent when a test builds the API without a daemon). */
  tenantData?: TenantData;
  /** `strata cp` into and out of docroots and instances (absent when a test builds the API without a daemon). */
  files?: FileCopies;
  /** Moves between daemons, both sides (absent when a test builds the API without a daemon). */
  /** Online backups of the daemon's state (absent when a test builds the API without a daemon). */
  backups?: Backups;
  moves?: { mover: Mover; receiver: Receiver; forwards: Forwards; flushRoutes(): Promise<void> };
}
