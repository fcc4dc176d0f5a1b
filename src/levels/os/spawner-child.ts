/**
 * The spawn helper's process (see `spawner.ts`): runs the commands the parent
 * sends over its IPC channel and answers with their outcome. It holds nothing
 * but this loop, so its fork() is cheap; it ends when the parent goes away.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import type { SpawnReply, SpawnRequest } from './spawner.js';

const reply = (r: SpawnReply): void => {
  process.send?.(r);
};

function handle(req: SpawnRequest): void {
  if (req.logPath !== undefined) {
    // stdin from /dev/null, stdout and stderr appended to the log (a detached container keeps them).
    let fd: number;
    try {
      fd = openSync(req.logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
    } catch (e) {
      reply({ id: req.id, code: null, stdout: '', stderr: '', error: (e as Error).message });
      return;
    }
    const child = spawn(req.command, req.args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.on('error', (e) => reply({ id: req.id, code: null, stdout: '', stderr: '', error: e.message }));
    child.on('exit', (code) => reply({ id: req.id, code, stdout: '', stderr: '' }));
    return;
  }
  const child = execFile(req.command, req.args, { timeout: req.timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
    if (!error) return reply({ id: req.id, code: 0, stdout, stderr });
    const code = typeof error.code === 'number' ? error.code : null;
    reply({ id: req.id, code, stdout, stderr, error: stderr ? undefined : error.message });
  });
  if (req.input !== undefined) child.stdin?.end(req.input);
}

process.on('message', (m) => handle(m as SpawnRequest));
process.on('disconnect', () => process.exit(0));
