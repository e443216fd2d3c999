/**
 * wasmvisor's embedding API: `import { Hypervisor } from 'wasmvisor'`.
 */
export { Hypervisor } from './hypervisor.ts';
export type { HypervisorOptions, DomainConfig, DomainInfo, ImageSource, SchedSettings } from './hypervisor.ts';
export { Domain } from './domain.ts';
export type { DomainExit, ExitAction } from './domain.ts';
export { GuestImage } from './loader/image.ts';
export type { Phase, ShutdownReason, CrashRecord } from '../kernel/domain.ts';
export * from '../kernel/errors.ts';
export { ConfigError, parseConfig } from './toolstack/xlcfg.ts';
export type { CfgValue, ParsedConfig } from './toolstack/xlcfg.ts';
export { loadDomainConfig, resolveDomainConfig, toDomainConfig, describeDomain, parseDefines, CONFIG_KEYS } from './toolstack/domain-config.ts';
export type { ResolvedDomain } from './toolstack/domain-config.ts';
export { parseBootOptions } from './boot-options.ts';
export { Controller, parseAction } from './toolstack/controller.ts';
export type { ControllerOptions } from './toolstack/controller.ts';
export { VirtualDisks, NoSuchVirtualDiskError, VirtualDiskExistsError, VirtualDiskMissingError, VirtualDiskInUseError, VirtualDiskIoError, parseVdSize } from '../devices/blk/vdisk.ts';
export type { VirtualDiskInfo, VirtualDisksOptions } from '../devices/blk/vdisk.ts';
export { startDaemon } from './toolstack/daemon.ts';
export type { Daemon, DaemonOptions } from './toolstack/daemon.ts';
export { ToolstackClient, NoDaemonError, ProtocolError, RemoteError } from './toolstack/client.ts';
export { DaemonRunningError, StateDirError, defaultStateDir } from './toolstack/paths.ts';
export { PROTOCOL_VERSION } from './toolstack/protocol.ts';
export type { Action, Results, CreateSpec, HostInfo } from './toolstack/protocol.ts';
