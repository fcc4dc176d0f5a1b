/**
 * Verifies a log file in a worker thread, so a full verification (seconds for
 * 100,000s of entries) never blocks the daemon's event loop.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { verifyDatabase, type VerifyReport } from './verify.js';

export function verifyDatabaseInWorker(path: string, publicKeyPem: string): Promise<VerifyReport> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { path, publicKeyPem } });
    worker.once('message', (report: VerifyReport) => resolve(report));
    worker.once('error', reject);
    worker.once('exit', (code) => code !== 0 && reject(new Error(`audit verifier exited with ${code}`)));
  });
}

if (!isMainThread && parentPort) {
  const { path, publicKeyPem } = workerData as { path: string; publicKeyPem: string };
  parentPort.postMessage(verifyDatabase(path, publicKeyPem));
}
