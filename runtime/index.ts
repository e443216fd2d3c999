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
