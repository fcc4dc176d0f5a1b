/**
 * Byte counters of a host network interface, from the end an instance is
 * plugged into (a container's host veth, a VM's tap): what the host side
 * transmits the instance receives, and the other way round.
 */
import { readFile } from 'node:fs/promises';

export interface InterfaceCounters {
  /** Bytes the instance behind the interface received. */
  rxBytes: number;
  /** Bytes it sent. */
  txBytes: number;
}

/** The counters of host interface `ifname` seen from the instance behind it; null when the interface does not exist. */
export async function instanceSideCounters(ifname: string): Promise<InterfaceCounters | null> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(ifname)) return null;
  try {
    const read = async (name: string): Promise<number> => Number((await readFile(`/sys/class/net/${ifname}/statistics/${name}`, 'utf8')).trim());
    const [tx, rx] = await Promise.all([read('tx_bytes'), read('rx_bytes')]);
    return { rxBytes: tx, txBytes: rx };
  } catch {
    return null;
  }
}
