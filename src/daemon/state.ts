/**
 * Daemon-wide state: the VM's devices, who owns them, the memory mappings the daemon made
 * for them, the vCPUs' notify fds. It outlives connections (protocol.md: the state is kept
 * when the owner disconnects).
 */
import type { VmDevices } from '../attr/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { MAX_VCPUS, SUPPORTED_FEATURES } from '../protocol/constants.js';
import { Errno } from '../util/errno.js';
import type { DaemonHost, DirtyLogMapping } from './host.js';
import type { Logger } from './logger.js';
import { DaemonCounters } from './stats.js';

/** What owns the VM: a connection that completed HELLO (any object identity). */
export interface Owner {
  readonly id: number;
}

export class DaemonState {
  readonly vm: VmDevices;
  readonly host: DaemonHost;
  readonly log: Logger;
  readonly counters = new DaemonCounters();
  /** Features this daemon grants when asked. */
  readonly supportedFeatures: number;
  owner: Owner | null = null;
  /** Guest memory mapped by SET_MEM_TABLE (null before the first one). */
  memory: GuestMemory | null = null;
  dirtyLog: DirtyLogMapping | null = null;
  /** Notify fd per vCPU, -1 when none. */
  readonly notifyFds = new Int32Array(MAX_VCPUS).fill(-1);
  connectionsOpen = 0;
  /** fds whose notify write failed (other than EAGAIN), logged once each. */
  private readonly failedNotifyFds = new Set<number>();

  constructor(vm: VmDevices, host: DaemonHost, log: Logger, supportedFeatures = SUPPORTED_FEATURES) {
    this.vm = vm;
    this.host = host;
    this.log = log;
    this.supportedFeatures = supportedFeatures;
    vm.setDeliverableHook(this.notifyVcpu);
  }

  /**
   * The deliverable hook: writes 1 to the vCPU's notify fd. EAGAIN means the eventfd
   * counter is saturated, i.e. already signalled, so it is not an error.
   */
  readonly notifyVcpu = (vcpu: number): void => {
    if (vcpu < 0 || vcpu >= MAX_VCPUS) return;
    const fd = this.notifyFds[vcpu]!;
    if (fd < 0) return;
    const r = this.host.writeU64(fd, 1);
    if (r >= 0 || r === -Errno.EAGAIN) {
      this.counters.notifyWrites++;
      return;
    }
    this.counters.notifyWriteErrors++;
    if (!this.failedNotifyFds.has(fd)) {
      this.failedNotifyFds.add(fd);
      this.log.warn({ vcpu, fd, errno: -r }, 'writing the vCPU notify fd failed');
    }
  };

  /** Installs fd as vcpu's notify fd (closing the previous one) and signals it if an LPI is already deliverable. */
  setNotifyFd(vcpu: number, fd: number): void {
    const previous = this.notifyFds[vcpu]!;
    this.host.prepareNotifyFd?.(fd);
    this.notifyFds[vcpu] = fd;
    if (previous >= 0) {
      this.failedNotifyFds.delete(previous);
      this.host.closeFd(previous);
    }
    if (this.vm.hasDeliverable(vcpu)) this.notifyVcpu(vcpu);
  }

  get notifyFdCount(): number {
    let n = 0;
    for (let i = 0; i < MAX_VCPUS; i++) if (this.notifyFds[i]! >= 0) n++;
    return n;
  }

  /** Releases everything the daemon holds (shutdown). */
  dispose(): void {
    this.vm.setDeliverableHook(null);
    for (let i = 0; i < MAX_VCPUS; i++) {
      const fd = this.notifyFds[i]!;
      if (fd >= 0) this.host.closeFd(fd);
      this.notifyFds[i] = -1;
    }
  }
}
