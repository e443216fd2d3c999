/** Entry point of a vCPU host worker thread. */
import { parentPort, workerData } from 'node:worker_threads';
import { VcpuHost } from './vcpu-host.ts';
import type { HostInit, ToHost } from './protocol.ts';

Error.stackTraceLimit = 64;
const port = parentPort;
if (!port) throw new Error('vcpu-worker must run in a worker thread');
const host = new VcpuHost(workerData as HostInit, (msg, transfer) => port.postMessage(msg, transfer ?? []));
port.on('message', (msg: ToHost) => host.handle(msg));
