// The device under the stack: anything that can send an Ethernet II frame.
// Received frames go the other way, through NetStack.input.

/**
 * Where the stack's frames go (netfront, or a test's wire). `send` must
 * copy the frame before it returns: the stack reuses the buffer at once.
 */
export abstract class NetLink {
  /** Send one frame (14..1514 bytes at `ptr`); 0, or a negative errno (-EAGAIN when the ring is full). */
  abstract send(ptr: usize, len: u32): i32;
}
