/** The dispatch table: one handler per request code. */
import { REQUEST_CODE_LIMIT, Request } from '../../protocol/constants.js';
import type { Handler } from '../context.js';
import { handleGetStats, handleResume, handleSuspend } from './control.js';
import { handleCreateDevice, handleGetDeviceAttr, handleHasDeviceAttr, handleMmio, handleSetDeviceAttr } from './device.js';
import { handleHello } from './hello.js';
import { handleSetLogBase, handleSetMemTable } from './memory.js';
import { handleSignalMsi, handleSignalMsiBatch } from './msi.js';
import { handleAckLpi, handleSetVcpuNotifyFd, handleSetVcpus } from './vcpu.js';

const byName: Readonly<Record<keyof typeof Request, Handler>> = {
  HELLO: handleHello,
  SET_MEM_TABLE: handleSetMemTable,
  SET_LOG_BASE: handleSetLogBase,
  CREATE_DEVICE: handleCreateDevice,
  SET_DEVICE_ATTR: handleSetDeviceAttr,
  GET_DEVICE_ATTR: handleGetDeviceAttr,
  HAS_DEVICE_ATTR: handleHasDeviceAttr,
  MMIO: handleMmio,
  SIGNAL_MSI: handleSignalMsi,
  SIGNAL_MSI_BATCH: handleSignalMsiBatch,
  SET_VCPUS: handleSetVcpus,
  SET_VCPU_NOTIFY_FD: handleSetVcpuNotifyFd,
  ACK_LPI: handleAckLpi,
  SUSPEND: handleSuspend,
  RESUME: handleResume,
  GET_STATS: handleGetStats,
};

/** HANDLERS[code]: the handler of a request code (undefined for unknown codes). */
export const HANDLERS: readonly (Handler | undefined)[] = (() => {
  const table = new Array<Handler | undefined>(REQUEST_CODE_LIMIT).fill(undefined);
  for (const [name, handler] of Object.entries(byName) as [keyof typeof Request, Handler][]) table[Request[name]] = handler;
  return table;
})();
