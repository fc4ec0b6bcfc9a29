/**
 * A VM set up over the wire with hand-built requests, the way a VMM and a Linux guest
 * would: guest RAM in a memfd passed with SCM_RIGHTS, vgic-v3 + ITS created through device
 * attributes, redistributor and ITS registers programmed through MMIO, commands written
 * into the queue in the shared RAM and kicked with a CWRITER write.
 *
 * Command layouts (its-model.md 2.2): DW0[7:0] opcode, DW0[63:32] DeviceID, DW1[31:0]
 * EventID, DW1[63:32] pINTID, DW1[4:0] Size, DW2[51:8] ITT address, DW2[15:0] ICID,
 * DW2[51:16] RDbase (processor number, GITS_TYPER.PTA = 0), DW2[63] Valid.
 */
import { createMemfdGuestMemory, type MappedGuestMemory } from '../../../src/memory/mapped-guest-memory.js';
import { RawClient } from './raw-client.js';
import { hello, kvmMsi, payload, request, type Reply } from './wire.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 16 * 1024 * 1024;
export const DIST_BASE = 0x0800_0000;
export const ITS_BASE = 0x0808_0000;
export const REDIST_BASE = 0x080a_0000;
export const GICR_STRIDE = 0x2_0000;
export const DOORBELL = ITS_BASE + 0x1_0040;

// Guest RAM layout (all 64 KiB aligned).
export const CMDQ = RAM_BASE;
export const DEVICE_TABLE = RAM_BASE + 0x1_0000;
export const COLLECTION_TABLE = RAM_BASE + 0x2_0000;
export const PROP_TABLE = RAM_BASE + 0x3_0000;
export const pendTable = (vcpu: number): number => RAM_BASE + 0x4_0000 + vcpu * 0x1_0000;
export const ITT_BASE = RAM_BASE + 0x20_0000;
/** ITT of a device: 256 events x 8 bytes = 2 KiB, 256-byte aligned. */
export const ITT_BYTES = 2048;
export const ittOf = (devid: number): number => ITT_BASE + devid * ITT_BYTES;
/** Event bits of every device: 8 (Size field 7). */
export const EVENT_BITS = 8;
/** LPI configuration byte: priority 0xa0, bit 1 RES1, bit 0 Enable. */
export const LPI_PROP_ENABLED = 0xa0 | 0x2 | 0x1;
export const CMDQ_BYTES = 0x1_0000;

export type Command = [bigint, bigint, bigint, bigint];
const b = BigInt;
export const cmd = {
  mapd: (devid: number, ittAddr: number, sizeBits = EVENT_BITS): Command => [0x08n | (b(devid) << 32n), b(sizeBits - 1), (b(ittAddr) & ~0xffn) | (1n << 63n), 0n],
  mapc: (icid: number, rdbase: number): Command => [0x09n, 0n, b(icid) | (b(rdbase) << 16n) | (1n << 63n), 0n],
  mapti: (devid: number, event: number, intid: number, icid: number): Command => [0x0an | (b(devid) << 32n), b(event) | (b(intid) << 32n), b(icid), 0n],
  int: (devid: number, event: number): Command => [0x03n | (b(devid) << 32n), b(event), 0n, 0n],
  discard: (devid: number, event: number): Command => [0x0fn | (b(devid) << 32n), b(event), 0n, 0n],
  sync: (rdbase: number): Command => [0x05n, 0n, b(rdbase) << 16n, 0n],
};

/** pINTID of (device, event) in these tests: 8192 + device * 256 + event. */
export const lpiOf = (devid: number, event: number): number => 8192 + devid * 256 + event;

export class WireVm {
  readonly c: RawClient;
  readonly ram: MappedGuestMemory;
  v3 = 0;
  its = 0;
  private seq = 100;
  private cwriter = 0;

  constructor(c: RawClient, ram: MappedGuestMemory) {
    this.c = c;
    this.ram = ram;
  }

  nextSeq(): number {
    return this.seq++;
  }

  async ok(bytes: Uint8Array, fds: number[] | null = null): Promise<Reply> {
    const r = await this.c.call(bytes, fds);
    if (r.status < 0) throw new Error(`request ${r.request} seq ${r.seq} failed: ${r.status}`);
    return r;
  }

  attr(code: 5 | 6 | 7, dev: number, group: number, attr: bigint, value = 0n): Uint8Array {
    return request(code, this.nextSeq(), payload(['u32', dev], ['u32', group], ['u64', attr], ['u64', value]));
  }

  mmio(gpa: number, len: number, write: boolean, data = 0n): Uint8Array {
    return request(8, this.nextSeq(), payload(['u64', b(gpa)], ['u32', len], ['u32', write ? 1 : 0], ['u64', data]));
  }

  async mmioWrite(gpa: number, len: number, data: bigint): Promise<void> {
    await this.ok(this.mmio(gpa, len, true, data));
  }

  async mmioRead(gpa: number, len: number): Promise<bigint> {
    return (await this.ok(this.mmio(gpa, len, false))).u64(0);
  }

  msi(devid: number, event: number, flags = 1): Uint8Array {
    return request(9, this.nextSeq(), kvmMsi(DOORBELL, event, devid, flags));
  }

  /** Writes commands into the queue in guest RAM and kicks CWRITER (processed before the reply). */
  async commands(cmds: Command[]): Promise<void> {
    for (const c of cmds) {
      for (let i = 0; i < 4; i++) this.ram.writeU64Big(CMDQ + this.cwriter + 8 * i, c[i]!);
      this.cwriter = (this.cwriter + 32) % CMDQ_BYTES;
    }
    await this.mmioWrite(ITS_BASE + 0x88, 8, b(this.cwriter));
  }
}

export interface SetupOptions {
  vcpus: number;
  devices: number;
  eventsPerDevice: number;
  features?: bigint;
}

/** HELLO, memory, vCPUs, vgic-v3 + ITS, redistributors, ITS tables, and every (device, event) mapped to vcpu (event % vcpus). */
export async function setupWireVm(socketPath: string, o: SetupOptions): Promise<WireVm> {
  const c = RawClient.connect(socketPath);
  const ram = createMemfdGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
  const vm = new WireVm(c, ram);
  const h = await vm.ok(hello(vm.nextSeq(), o.features ?? 0xfn));
  if (h.u32(4) !== 0) throw new Error('daemon already holds state');
  // SET_MEM_TABLE: one region, fd = the memfd, offset 0.
  const fd = ram.mappedRegions[0]!.fd;
  await vm.ok(request(2, vm.nextSeq(), payload(['u32', 1], ['u32', 0], ['u64', b(RAM_BASE)], ['u64', b(RAM_SIZE)], ['u64', 0n])), [fd]);
  await vm.ok(request(11, vm.nextSeq(), payload(['u32', o.vcpus], ['u32', 0])));
  vm.v3 = (await vm.ok(request(4, vm.nextSeq(), payload(['u32', 7], ['u32', 0])))).u32(0);
  await vm.ok(vm.attr(5, vm.v3, 0, 2n, b(DIST_BASE))); // GRP_ADDR / DIST
  await vm.ok(vm.attr(5, vm.v3, 0, 3n, b(REDIST_BASE))); // GRP_ADDR / REDIST
  await vm.ok(vm.attr(5, vm.v3, 4, 0n)); // GRP_CTRL / INIT
  vm.its = (await vm.ok(request(4, vm.nextSeq(), payload(['u32', 8], ['u32', 0])))).u32(0);
  await vm.ok(vm.attr(5, vm.its, 0, 4n, b(ITS_BASE))); // GRP_ADDR / ITS
  await vm.ok(vm.attr(5, vm.its, 4, 0n)); // GRP_CTRL / INIT

  // The guest: LPI configuration (all enabled), then each redistributor.
  ram.fill(PROP_TABLE, 0x1_0000 - 8192, LPI_PROP_ENABLED);
  for (let i = 0; i < o.vcpus; i++) {
    const rd = REDIST_BASE + i * GICR_STRIDE;
    // PROPBASER: PA | InnerShareable (1 << 10) | RaWaWb (7 << 7) | IDbits 15
    await vm.mmioWrite(rd + 0x70, 8, b(PROP_TABLE) | (1n << 10n) | (7n << 7n) | 15n);
    await vm.mmioWrite(rd + 0x78, 8, b(pendTable(i)) | (1n << 10n) | (7n << 7n));
    await vm.mmioWrite(rd + 0x00, 4, 1n); // EnableLPIs
  }
  // ITS tables: BASER0 devices, BASER1 collections (Valid | 64 KiB pages | PA, 1 page); CBASER 16 x 4 KiB.
  await vm.mmioWrite(ITS_BASE + 0x100, 8, (1n << 63n) | (2n << 8n) | b(DEVICE_TABLE));
  await vm.mmioWrite(ITS_BASE + 0x108, 8, (1n << 63n) | (2n << 8n) | b(COLLECTION_TABLE));
  await vm.mmioWrite(ITS_BASE + 0x80, 8, (1n << 63n) | b(CMDQ) | 15n);
  await vm.mmioWrite(ITS_BASE + 0x00, 4, 1n);

  const cmds: Command[] = [];
  for (let i = 0; i < o.vcpus; i++) cmds.push(cmd.mapc(i, i));
  for (let d = 0; d < o.devices; d++) {
    cmds.push(cmd.mapd(d, ittOf(d)));
    for (let e = 0; e < o.eventsPerDevice; e++) cmds.push(cmd.mapti(d, e, lpiOf(d, e), e % o.vcpus));
  }
  cmds.push(cmd.sync(0));
  // The queue holds 2048 commands: submit in slices.
  for (let at = 0; at < cmds.length; at += 1000) await vm.commands(cmds.slice(at, at + 1000));
  return vm;
}
