/** Replay of real QEMU ITS traces against vitsd. */
export {
  parseQemuTrace, readQemuTrace, decodeTraceBytes, messageFields,
  type ParsedTrace, type ParseOptions, type TraceEvent, type TraceEventKind, type TracedCommandFields,
} from './qemu-trace.js';
export { encodeCommand, commandWordsAt, commandName, ItsOpcode, ITS_COMMAND_BYTES } from './its-commands.js';
export { planReplay, type ReplayPlan, type ExpectedTranslation, type CommandBatch } from './trace-analysis.js';
export { layoutGuestRam, type ReplayLayout } from './guest-layout.js';
export { readTableDumps, type MemoryDump } from './table-dumps.js';
export type { ReplayEndpoint, EndpointFactory, EndpointStats } from './endpoint.js';
export { inProcessFactory, socketFactory, spawnDaemonFactory, firstThen } from './endpoints.js';
export { migrateDirect, migrateWithOrchestrator, type MigrationResult } from './migrate.js';
export { replayQemuTrace, type ReplayOptions, type MigrateFn } from './replayer.js';
export { formatReport, type ReplayReport, type Disagreement, type CategoryResult } from './report.js';
export { VIRT_ITS_BASE, VIRT_GICR_BASE, VIRT_GICD_BASE } from './vm-setup.js';
