// Errors of the network stack (Linux numbers). Like the hypercall errnos of
// ../abi, they are positive constants and calls return them negated: a
// TcpSocket.send that finds the buffer full returns -NET_EAGAIN.

/** The call would have to wait: no data yet, no buffer space, the link's ring is full. Same number as EAGAIN. */
export const NET_EAGAIN: i32 = 11;
/** The socket handle was closed. */
export const NET_EBADF: i32 = 9;
/** A bad argument: a port 0 where one is needed, a socket in the wrong state for the call. */
export const NET_EINVAL: i32 = 22;
/** Sending after shutdown() or close(). */
export const NET_EPIPE: i32 = 32;
/** A UDP datagram or ICMP payload larger than one frame can carry (no fragmentation). */
export const NET_EMSGSIZE: i32 = 90;
/** The local port is taken by another socket. */
export const NET_EADDRINUSE: i32 = 98;
/** The stack has no address (setAddress/configure not called), or no free ephemeral port. */
export const NET_EADDRNOTAVAIL: i32 = 99;
/** The destination is off every local subnet and there is no gateway. */
export const NET_ENETUNREACH: i32 = 101;
/** The peer reset the connection. */
export const NET_ECONNRESET: i32 = 104;
/** No free socket, ping slot or address slot (the stack's fixed limits). */
export const NET_ENOBUFS: i32 = 105;
/** connect() on a socket that is already connecting or connected. */
export const NET_EISCONN: i32 = 106;
/** send()/recv() on a socket that is not connected. */
export const NET_ENOTCONN: i32 = 107;
/** The peer stopped answering: retransmissions gave up. */
export const NET_ETIMEDOUT: i32 = 110;
/** The peer answered the connection request with a reset: nothing listens on that port. */
export const NET_ECONNREFUSED: i32 = 111;
