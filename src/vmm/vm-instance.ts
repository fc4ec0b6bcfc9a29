/**
 * One VM as the reference VMM sees it over the wire: its guest RAM in a shared file (mapped
 * here and handed to the daemon with SET_MEM_TABLE), an optional dirty log in a memfd (shared
 * with the daemon by SET_LOG_BASE and attached to the VMM's own mapping, so both sides' writes
 * are tracked), the client connection and the interrupt-controller devices.
 */
import { ftruncateSync } from 'node:fs';
import { VitsdClient, type VitsdClientOptions } from '../client/client.js';
import { mapDirtyLog, type MappedDirtyLog } from '../memory/mapped-dirty-log.js';
import { createMemfdGuestMemory, openFileGuestMemory, type MappedGuestMemory } from '../memory/mapped-guest-memory.js';
import { dirtyLogBytesFor } from '../memory/region-table.js';
import { MFD_CLOEXEC } from '../native/binding.js';
import { native } from '../native/index.js';
import { createGic, type GicDevices } from './gic-setup.js';
import type { MigrationDestination, MigrationSource } from './migration.js';
import type { VmLayout } from './vm-layout.js';

export interface VmInstanceOptions {
  readonly socketPath: string;
  readonly layout: VmLayout;
  /** RAM file path (created if missing); default: an anonymous memfd. */
  readonly ramPath?: string;
  /** Set up a dirty log shared with the daemon (feature DIRTY_LOG). */
  readonly dirtyLog?: boolean;
  readonly client?: VitsdClientOptions;
}

export class VmInstance {
  private logMapping: MappedDirtyLog | null = null;
  private logFd = -1;
  devices: GicDevices | null = null;

  private constructor(
    readonly layout: VmLayout,
    readonly client: VitsdClient,
    readonly memory: MappedGuestMemory,
  ) {}

  /** Connects (HELLO), maps RAM, sends SET_MEM_TABLE (and SET_LOG_BASE). No devices yet. */
  static async open(opts: VmInstanceOptions): Promise<VmInstance> {
    const region = { gpa: opts.layout.ramBase, size: opts.layout.ramSize };
    const memory = opts.ramPath ? openFileGuestMemory(opts.ramPath, [region], { create: true }) : createMemfdGuestMemory([region], { name: 'vitsd-demo-ram' });
    let client: VitsdClient;
    try {
      client = await VitsdClient.connect(opts.socketPath, opts.client);
    } catch (e) {
      memory.close();
      throw e;
    }
    const vm = new VmInstance(opts.layout, client, memory);
    try {
      await vm.sendMemTable();
      if (opts.dirtyLog) await vm.enableDirtyLog();
    } catch (e) {
      vm.close();
      throw e;
    }
    return vm;
  }

  async sendMemTable(): Promise<void> {
    await this.client.setMemTable(this.memory.mappedRegions.map((r) => ({ gpa: r.gpa, size: r.size, fd: r.fd, mmapOffset: r.mmapOffset })));
  }

  /** A memfd bitmap covering every region, given to the daemon and attached to our mapping. */
  async enableDirtyLog(): Promise<void> {
    const end = Math.max(...this.memory.regions.map((r) => r.gpa + r.size));
    const bytes = dirtyLogBytesFor(end);
    const fd = native.memfdCreate('vitsd-dirty-log', MFD_CLOEXEC);
    try {
      ftruncateSync(fd, Math.ceil(bytes / 4096) * 4096);
      this.logMapping = mapDirtyLog(fd, bytes, 0);
      await this.client.setLogBase(fd, bytes, 0);
    } catch (e) {
      this.logMapping?.close();
      this.logMapping = null;
      native.close(fd);
      throw e;
    }
    this.logFd = fd;
    this.memory.setDirtyLog(this.logMapping.log);
  }

  get dirtyLog(): Uint8Array | null {
    return this.logMapping?.log ?? null;
  }

  async createGic(): Promise<GicDevices> {
    this.devices = await createGic(this.client, this.layout);
    return this.devices;
  }

  asMigrationSource(): MigrationSource {
    if (!this.devices) throw new Error('the source VM has no devices');
    return { target: this.client, memory: this.memory, devices: this.devices, dirtyLog: this.dirtyLog };
  }

  /** As a destination: memory goes over in the prepare phase (the table is sent already by open()). */
  asMigrationDestination(): MigrationDestination {
    return { target: this.client, memory: this.memory, attachMemory: async () => undefined };
  }

  close(): void {
    this.client.close();
    if (this.logMapping) {
      this.memory.setDirtyLog(null);
      this.logMapping.close();
      this.logMapping = null;
    }
    if (this.logFd >= 0) {
      native.close(this.logFd);
      this.logFd = -1;
    }
    this.memory.close();
  }
}
