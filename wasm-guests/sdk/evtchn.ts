// Event channels (interface `evtchn` of host-bindings/wit/hypercall.wit).
// A negative result is a negated errno (constants in ./abi).
import { sched_block } from "./abi";

@external("wasmvisor:hypercall/evtchn@0.1.0", "alloc-unbound")
export declare function evtchn_alloc_unbound(remote: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "bind-interdomain")
export declare function evtchn_bind_interdomain(remote: u32, remotePort: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "bind-virq")
export declare function evtchn_bind_virq(virq: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "send")
export declare function evtchn_send(port: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "close")
export declare function evtchn_close(port: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "status")
export declare function evtchn_status(port: u32, out: usize): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "mask")
export declare function evtchn_mask(port: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "unmask")
export declare function evtchn_unmask(port: u32): i32;
@external("wasmvisor:hypercall/evtchn@0.1.0", "pending")
export declare function evtchn_pending(ptr: usize, words: u32): i32;

/** Port states reported by evtchn_status. */
export const PORT_FREE: u32 = 0;
export const PORT_UNBOUND: u32 = 1;
export const PORT_INTERDOMAIN: u32 = 2;
export const PORT_VIRQ: u32 = 3;
/** Virtual interrupts. */
export const VIRQ_TIMER: u32 = 0;
export const VIRQ_CONSOLE: u32 = 1;
/** The toolstack asks the domain to shut down (the reason is in the start-info page, see requestedShutdown()). */
export const VIRQ_SHUTDOWN: u32 = 2;
/** A store watch fired (see storeNextEvent()). */
export const VIRQ_STORE: u32 = 4;

/** Ports per domain, and the words of a pending bitmap. */
export const NR_PORTS: u32 = 256;
const PENDING_WORDS: u32 = NR_PORTS / 32;
const statusBuf = memory.data(16, 4);
const pendingBuf = memory.data(<i32>(PENDING_WORDS * 4), 4);

/** The domain at the other end of interdomain `port`, or a negative errno (-EINVAL when it is not interdomain). */
export function peerOf(port: u32): i32 {
  const state = evtchn_status(port, statusBuf);
  if (state < 0) return state;
  if (<u32>state != PORT_INTERDOMAIN) return -22;
  return load<i32>(statusBuf, 4);
}

/** Read and clear the pending bitmap; true when `port` was among the pending ports. */
export function takePending(port: u32): bool {
  evtchn_pending(pendingBuf, PENDING_WORDS);
  return (load<u32>(pendingBuf + ((port >> 5) << 2)) & (1 << (port & 31))) != 0;
}

/** Sleep until `port` has been signalled (other ports' events are consumed too). */
export function waitFor(port: u32): void {
  while (!takePending(port)) sched_block(0);
}
