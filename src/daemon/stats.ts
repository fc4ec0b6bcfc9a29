/**
 * Counters of the daemon (requests by code, errors by errno, connections, bytes, fds) and
 * the GET_STATS JSON that joins them with the VM's own statistics.
 *
 * Counting is on the MSI path, so the counters are typed arrays indexed by number: no
 * allocation, no string keys per request.
 */
import type { VmStats } from '../attr/types.js';
import { REQUEST_RULES } from '../protocol/requests.js';
import type { StatsReply } from '../protocol/stats.js';
import { errnoName } from '../util/errno.js';

/** Request codes counted individually; larger codes land in the UNKNOWN slot. */
const CODE_SLOTS = 64;
const UNKNOWN_SLOT = CODE_SLOTS;
const ERRNO_SLOTS = 256;

export class DaemonCounters {
  readonly startedAt = Date.now();
  readonly requestsByCode = new Float64Array(CODE_SLOTS + 1);
  readonly errorsByErrno = new Float64Array(ERRNO_SLOTS);
  connectionsAccepted = 0;
  connectionsClosed = 0;
  connectionsRefused = 0;
  framingErrors = 0;
  requestErrors = 0;
  internalErrors = 0;
  fdsReceived = 0;
  fdsDropped = 0;
  bytesReceived = 0;
  bytesSent = 0;
  notifyWrites = 0;
  notifyWriteErrors = 0;

  countRequest(code: number): void {
    this.requestsByCode[code < CODE_SLOTS ? code : UNKNOWN_SLOT]! += 1;
  }

  /** errno positive or negative. */
  countError(errno: number): void {
    const e = errno < 0 ? -errno : errno;
    this.errorsByErrno[e < ERRNO_SLOTS ? e : 0]! += 1;
  }
}

export interface StatsSnapshotInput {
  counters: DaemonCounters;
  vm: VmStats;
  connectionsOpen: number;
  ownerConnected: boolean;
  suspended: boolean;
  nrVcpus: number;
  notifyFds: number;
  dirtyLog: boolean;
  memoryRegions: number;
}

/** The GET_STATS object (protocol.md "GET_STATS"), with a `daemon` section of our own counters. */
export function buildStats(input: StatsSnapshotInput): StatsReply {
  const c = input.counters;
  const requests: Record<string, number> = {};
  for (const rule of REQUEST_RULES) requests[rule.name] = c.requestsByCode[rule.code]!;
  let unknown = c.requestsByCode[UNKNOWN_SLOT]!;
  for (let code = 0; code < CODE_SLOTS; code++) {
    if (!REQUEST_RULES.some((r) => r.code === code)) unknown += c.requestsByCode[code]!;
  }
  if (unknown > 0) requests['UNKNOWN'] = unknown;
  const errors: Record<string, number> = {};
  for (let e = 0; e < ERRNO_SLOTS; e++) {
    const n = c.errorsByErrno[e]!;
    if (n > 0) errors[errnoName(e)] = n;
  }
  const vm = input.vm;
  return {
    requests,
    errors,
    msi: { delivered: vm.msiDelivered, dropped: vm.msiDropped, dropped_by_reason: { ...vm.msiDroppedByReason } },
    commands: { ...vm.commands },
    command_errors: { ...vm.commandErrors },
    saves: { count: vm.saves.count, last_ms: vm.saves.lastMs },
    restores: { count: vm.restores.count, last_ms: vm.restores.lastMs },
    pending_saves: { count: vm.pendingSaves.count, last_ms: vm.pendingSaves.lastMs },
    daemon: {
      uptime_s: (Date.now() - c.startedAt) / 1000,
      connections_open: input.connectionsOpen,
      connections_accepted: c.connectionsAccepted,
      connections_closed: c.connectionsClosed,
      connections_refused: c.connectionsRefused,
      owner_connected: input.ownerConnected,
      framing_errors: c.framingErrors,
      request_errors: c.requestErrors,
      internal_errors: c.internalErrors,
      fds_received: c.fdsReceived,
      fds_dropped: c.fdsDropped,
      bytes_received: c.bytesReceived,
      bytes_sent: c.bytesSent,
      notify_writes: c.notifyWrites,
      notify_write_errors: c.notifyWriteErrors,
      notify_fds: input.notifyFds,
      suspended: input.suspended,
      vcpus: input.nrVcpus,
      memory_regions: input.memoryRegions,
      dirty_log: input.dirtyLog,
    },
  };
}
