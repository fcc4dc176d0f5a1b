/**
 * A VM's console: its serial port, which QEMU serves on a unix socket (a
 * `-chardev socket` that also writes everything the guest prints to the serial
 * log, see `cmdline.ts`). Attaching is connecting to that socket: what is
 * written reaches the guest's serial input, what the guest prints comes back.
 *
 * QEMU serves one client at a time (a second would wait, silent, behind the
 * first), so a second attachment is refused with a conflict instead, until the
 * first one ends.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { StrataError, conflict } from '../../errors.js';

const attached = new Set<string>();

/** Connects to the console socket at `path`; `name` is for messages. */
export function attachConsole(path: string, name: string): Promise<Duplex> {
  if (attached.has(path)) return Promise.reject(conflict(`the console of ${name} is in use: one client at a time`, { instance: name }));
  attached.add(path);
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(path);
    socket.once('close', () => attached.delete(path));
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => socket.destroy());
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      attached.delete(path);
      reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
        ? new StrataError('STRATA_ERR_UNSUPPORTED', `${name} has no console socket: it was started before consoles existed; restart it`, { instance: name })
        : new StrataError('STRATA_ERR_DRIVER', `attaching to the console of ${name} failed: ${e.message}`, { instance: name }));
    });
  });
}
