/**
 * What a level driver reports about a live instance, as every layer reads it:
 * the typed facts other parts act on — where the front door reaches it, which
 * host process the guard watches, where its console is, how its process
 * ended — beside details shown to people only (accelerator, stats, image …).
 *
 * Drivers write it (`ObservedInstance.info`); the store keeps the last one
 * (`Instance.info`); the front door, the guard and the reconciler read the
 * facts by name and never by guesswork.
 */
export interface InstanceFacts {
  /**
   * The instance's network address: its own (a container, a VM on its tenant's
   * bridge), or the host's loopback when it serves one port there (an isolate).
   */
  address?: string;
  /**
   * The one port it serves on at `address`, whatever port a site names (an
   * isolate's loopback listener, a container's configured port); null or
   * absent: the port a site names.
   */
  port?: number | null;
  /** With `port`: the only port a site may name to reach it. */
  guestPort?: number | null;
  /** The host bridge the instance's address sits on. */
  bridge?: string;
  /** The hardware address of its network interface on that bridge. */
  mac?: string;
  /** The host process that runs it (a container's init, QEMU, the isolate host). */
  pid?: number;
  /** Its console (serial port) log on the host. */
  console?: string;
  /** How its process ended, when known. */
  exitCode?: number;
  /** Why it failed. */
  error?: string;
  /** Times the reconciler restarted it under its restart policy (written by the control plane). */
  restarts?: number;
}

/** The facts, and details for people under any other name. */
export type InstanceInfo = InstanceFacts & { [detail: string]: unknown };
