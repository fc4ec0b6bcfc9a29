/**
 * Reference VMM pieces: the Linux-like guest ITS driver, device models, the migration
 * orchestrator and the register state they carry. Everything here runs on a VitsdTarget (the
 * wire client or an in-process VmDevices) and a GuestMemory; vm-instance.ts (a VM over the
 * wire with mapped RAM) loads the native addon and is imported on its own.
 */
export type { VitsdTarget } from './types.js';
export * from './its-command.js';
export * from './gic-regs.js';
export * from './vm-layout.js';
export * from './guest-bus.js';
export * from './guest-ram-allocator.js';
export * from './lpi-allocator.js';
export * from './command-queue.js';
export * from './guest-driver.js';
export * from './guest-cpus.js';
export * from './device-model.js';
export * from './gic-setup.js';
export * from './gic-state.js';
export * from './ram-copy.js';
export * from './migration.js';
export * from './verify.js';
export { InProcessTarget } from './in-process-target.js';
