// A TCP/IP stack for guests, independent of the device below it: Ethernet
// II frames in (NetStack.input) and out (a NetLink), ARP, IPv4, ICMP echo,
// UDP and TCP, with a socket-like API. See stack.ts for the loop a guest runs.
export { NetLink } from "./link";
export { NetStack, NetOptions } from "./stack";
export { TcpSocket, TcpAdmit, TcpState, TCP_MSS, TCP_RTO_INITIAL_NS, TCP_RTO_MIN_NS, TCP_RTO_MAX_NS, TCP_SYN_RETRIES, TCP_DATA_RETRIES, TCP_TIME_WAIT_NS } from "./tcp";
export { UdpSocket, UdpEndpoint, UDP_MAX_PAYLOAD } from "./udp";
export { PingReply, PING_MAX_PAYLOAD } from "./icmp";
export { NetStats, NetStat, netStatName } from "./stats";
export { NetConfig, ipAddr, parseIpv4, formatIpv4, parseMacAddress, formatMacAddress, defaultMask, validMask } from "./addr";
export { ETH_HLEN, ETH_MAX_FRAME, ETH_MTU, NET_MAX_ADDRESSES } from "./iface";
export {
  NET_EAGAIN, NET_EBADF, NET_EINVAL, NET_EPIPE, NET_EMSGSIZE, NET_EADDRINUSE, NET_EADDRNOTAVAIL, NET_ENETUNREACH,
  NET_ECONNRESET, NET_ENOBUFS, NET_EISCONN, NET_ENOTCONN, NET_ETIMEDOUT, NET_ECONNREFUSED,
} from "./errno";
