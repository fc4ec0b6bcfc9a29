/**
 * The interrupt-controller state a VMM carries across a migration besides guest RAM
 * (its-model.md 6, QEMU's vmstate): per ITS the registers GITS_CTLR, IIDR, CBASER, CREADR,
 * CWRITER, BASER0..7; per redistributor GICR_CTLR, PROPBASER, PENDBASER. Reading it from a
 * suspended source and writing it to a destination, in KVM's orders (kvm-its-abi.md 5).
 *
 * Also its JSON form (u64 as "0x..." strings), used by `vitsctl save` / `restore`.
 */
import {
  KVM_DEV_ARM_ITS_RESTORE_TABLES,
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_ITS_REGS,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
} from '../attr/types.js';
import { Errno, ErrnoError } from '../util/errno.js';
import {
  GICR_CTLR,
  GICR_PENDBASER,
  GICR_PROPBASER,
  GITS_BASER_NR_REGS,
  GITS_CBASER,
  GITS_CREADR,
  GITS_CTLR,
  GITS_CWRITER,
  GITS_IIDR,
  gitsBaser,
  redistRegAttr,
} from './gic-regs.js';
import type { GicDevices } from './gic-setup.js';
import type { VitsdTarget } from './types.js';

export interface ItsRegisters {
  base: number;
  ctlr: bigint;
  iidr: bigint;
  cbaser: bigint;
  creadr: bigint;
  cwriter: bigint;
  baser: bigint[];
}

export interface RedistRegisters {
  ctlr: bigint;
  propbaser: bigint;
  pendbaser: bigint;
}

export interface GicState {
  nrVcpus: number;
  its: ItsRegisters[];
  redist: RedistRegisters[];
  /** Where the vgic-v3 frames were (a restore re-creates the devices there). */
  layout?: { distBase: number; redistBase: number };
}

/** ITS register restore orders the destination may use (both accepted by KVM). */
export type ItsRestoreOrder = 'kvm' | 'qemu';

/**
 * Runs requests in order. Pipelined, they are all sent before the first reply is awaited:
 * the daemon executes requests one at a time in arrival order (protocol.md: one reply per
 * request, in order), so the effect is the sequential one, minus the round trips. On a
 * failure the requests after the failing one have run too; callers use this only where the
 * whole sequence is abandoned on error (a failed migration or restore).
 */
export async function inOrder(ops: readonly (() => Promise<unknown>)[], pipelined: boolean): Promise<void> {
  if (pipelined) {
    await Promise.all(ops.map((op) => op()));
    return;
  }
  for (const op of ops) await op();
}

// ---- control calls ----

export async function savePendingTables(target: VitsdTarget, vgic: number): Promise<void> {
  await target.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n);
}

export async function saveItsTables(target: VitsdTarget, its: number): Promise<void> {
  await target.setDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n);
}

export async function restoreItsTables(target: VitsdTarget, its: number): Promise<void> {
  await target.setDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_RESTORE_TABLES), 0n);
}

// ---- register access ----

const getItsReg = (t: VitsdTarget, its: number, off: number): Promise<bigint> => t.getDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(off));
const setItsReg = (t: VitsdTarget, its: number, off: number, v: bigint): Promise<bigint> => t.setDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(off), v);

/** A 64-bit redistributor register through GRP_REDIST_REGS: two 32-bit halves, low first. */
export async function getRedistReg64(t: VitsdTarget, vgic: number, vcpu: number, off: number): Promise<bigint> {
  const [lo, hi] = await Promise.all([
    t.getDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off)),
    t.getDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off + 4)),
  ]);
  return ((hi & 0xffffffffn) << 32n) | (lo & 0xffffffffn);
}

export async function setRedistReg64(t: VitsdTarget, vgic: number, vcpu: number, off: number, v: bigint): Promise<void> {
  await t.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off), v & 0xffffffffn);
  await t.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off + 4), (v >> 32n) & 0xffffffffn);
}

export async function getRedistReg32(t: VitsdTarget, vgic: number, vcpu: number, off: number): Promise<bigint> {
  return (await t.getDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off))) & 0xffffffffn;
}

export async function setRedistReg32(t: VitsdTarget, vgic: number, vcpu: number, off: number, v: bigint): Promise<void> {
  await t.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, off), v & 0xffffffffn);
}

/** QEMU's pre_save order: BASER0..7, CTLR, CBASER, CREADR, CWRITER, IIDR. */
export async function readItsRegisters(t: VitsdTarget, its: number, base: number, pipelined = true): Promise<ItsRegisters> {
  const offsets = [...Array.from({ length: GITS_BASER_NR_REGS }, (_, n) => gitsBaser(n)), GITS_CTLR, GITS_CBASER, GITS_CREADR, GITS_CWRITER, GITS_IIDR];
  const values: bigint[] = [];
  await inOrder(
    offsets.map((off, i) => async () => {
      values[i] = await getItsReg(t, its, off);
    }),
    pipelined,
  );
  const n = GITS_BASER_NR_REGS;
  return { base, baser: values.slice(0, n), ctlr: values[n]!, cbaser: values[n + 1]!, creadr: values[n + 2]!, cwriter: values[n + 3]!, iidr: values[n + 4]! };
}

export async function readRedistRegisters(t: VitsdTarget, vgic: number, vcpu: number, pipelined = true): Promise<RedistRegisters> {
  const r: RedistRegisters = { ctlr: 0n, propbaser: 0n, pendbaser: 0n };
  await inOrder(
    [
      async () => void (r.ctlr = await getRedistReg32(t, vgic, vcpu, GICR_CTLR)),
      async () => void (r.propbaser = await getRedistReg64(t, vgic, vcpu, GICR_PROPBASER)),
      async () => void (r.pendbaser = await getRedistReg64(t, vgic, vcpu, GICR_PENDBASER)),
    ],
    pipelined,
  );
  return r;
}

/** Reads every register of the state (the source must be suspended and its tables saved). */
export async function readGicState(t: VitsdTarget, devices: GicDevices, itsBases: readonly number[], nrVcpus: number, pipelined = true): Promise<GicState> {
  const its: ItsRegisters[] = [];
  const redist: RedistRegisters[] = [];
  await inOrder(
    [
      ...devices.its.map((id, i) => async () => void (its[i] = await readItsRegisters(t, id, itsBases[i]!, pipelined))),
      ...Array.from({ length: nrVcpus }, (_, v) => async () => void (redist[v] = await readRedistRegisters(t, devices.vgic, v, pipelined))),
    ],
    pipelined,
  );
  return { nrVcpus, its, redist };
}

/**
 * Redistributors, QEMU's kvm_arm_gicv3_put order: PROPBASER and PENDBASER of every
 * redistributor (low, then high halves), then each GICR_CTLR.
 */
export async function writeRedistState(t: VitsdTarget, vgic: number, redist: readonly RedistRegisters[], pipelined = true): Promise<void> {
  const ops: (() => Promise<unknown>)[] = [];
  const half = (v: number, off: number, value: bigint) => () => setRedistReg32(t, vgic, v, off, value);
  for (let v = 0; v < redist.length; v++) {
    const r = redist[v]!;
    ops.push(half(v, GICR_PROPBASER, r.propbaser), half(v, GICR_PROPBASER + 4, r.propbaser >> 32n));
    ops.push(half(v, GICR_PENDBASER, r.pendbaser), half(v, GICR_PENDBASER + 4, r.pendbaser >> 32n));
  }
  for (let v = 0; v < redist.length; v++) ops.push(half(v, GICR_CTLR, redist[v]!.ctlr));
  await inOrder(ops, pipelined);
}

/**
 * Every ITS register but GITS_CTLR, in KVM's documented order (IIDR, BASER<n>, CBASER,
 * CREADR, CWRITER) or QEMU's (IIDR, CBASER, CREADR, CWRITER, BASER<n>).
 */
export async function writeItsRegistersExceptCtlr(t: VitsdTarget, its: number, regs: ItsRegisters, order: ItsRestoreOrder = 'kvm', pipelined = true): Promise<void> {
  const set = (off: number, v: bigint) => () => setItsReg(t, its, off, v);
  const basers = Array.from({ length: GITS_BASER_NR_REGS }, (_, n) => set(gitsBaser(n), regs.baser[n] ?? 0n));
  const queue = [set(GITS_CBASER, regs.cbaser), set(GITS_CREADR, regs.creadr), set(GITS_CWRITER, regs.cwriter)];
  await inOrder([set(GITS_IIDR, regs.iidr), ...(order === 'kvm' ? [...basers, ...queue] : [...queue, ...basers])], pipelined);
}

export async function writeItsCtlr(t: VitsdTarget, its: number, regs: ItsRegisters): Promise<void> {
  await setItsReg(t, its, GITS_CTLR, regs.ctlr);
}

// ---- JSON form ----

export interface GicStateJson {
  format: 'vitsd-gic-state';
  version: 1;
  nrVcpus: number;
  its: { base: string; ctlr: string; iidr: string; cbaser: string; creadr: string; cwriter: string; baser: string[] }[];
  redist: { ctlr: string; propbaser: string; pendbaser: string }[];
  layout?: { distBase: string; redistBase: string };
}

const h = (v: bigint): string => `0x${v.toString(16)}`;

export function gicStateToJson(s: GicState): GicStateJson {
  return {
    format: 'vitsd-gic-state',
    version: 1,
    nrVcpus: s.nrVcpus,
    its: s.its.map((r) => ({ base: h(BigInt(r.base)), ctlr: h(r.ctlr), iidr: h(r.iidr), cbaser: h(r.cbaser), creadr: h(r.creadr), cwriter: h(r.cwriter), baser: r.baser.map(h) })),
    redist: s.redist.map((r) => ({ ctlr: h(r.ctlr), propbaser: h(r.propbaser), pendbaser: h(r.pendbaser) })),
    ...(s.layout ? { layout: { distBase: h(BigInt(s.layout.distBase)), redistBase: h(BigInt(s.layout.redistBase)) } } : {}),
  };
}

function parseU64(v: unknown, where: string): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(v)) {
    const b = BigInt(v);
    if (b <= 0xffffffffffffffffn) return b;
  }
  throw new ErrnoError(Errno.EINVAL, `state file: ${where} is not a u64 (${JSON.stringify(v)})`);
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ErrnoError(Errno.EINVAL, `state file: ${where} is not an object`);
  return v as Record<string, unknown>;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw new ErrnoError(Errno.EINVAL, `state file: ${where} is not an array`);
  return v;
}

/** Parses and validates a state file; a missing or partial state is an ErrnoError(EINVAL), never a crash. */
export function gicStateFromJson(input: unknown): GicState {
  const root = obj(input, 'the document');
  if (root['format'] !== 'vitsd-gic-state') throw new ErrnoError(Errno.EINVAL, 'state file: format is not "vitsd-gic-state"');
  if (root['version'] !== 1) throw new ErrnoError(Errno.EINVAL, `state file: unsupported version ${JSON.stringify(root['version'])}`);
  const nrVcpus = root['nrVcpus'];
  if (typeof nrVcpus !== 'number' || !Number.isInteger(nrVcpus) || nrVcpus < 1 || nrVcpus > 512) throw new ErrnoError(Errno.EINVAL, 'state file: nrVcpus must be 1..512');
  const itsList = arr(root['its'], 'its');
  if (itsList.length < 1 || itsList.length > 16) throw new ErrnoError(Errno.EINVAL, 'state file: its must list 1..16 ITSes');
  const its = itsList.map((x, i): ItsRegisters => {
    const o = obj(x, `its[${i}]`);
    const baser = arr(o['baser'], `its[${i}].baser`);
    if (baser.length !== GITS_BASER_NR_REGS) throw new ErrnoError(Errno.EINVAL, `state file: its[${i}].baser must have 8 entries`);
    return {
      base: Number(parseU64(o['base'], `its[${i}].base`)),
      ctlr: parseU64(o['ctlr'], `its[${i}].ctlr`),
      iidr: parseU64(o['iidr'], `its[${i}].iidr`),
      cbaser: parseU64(o['cbaser'], `its[${i}].cbaser`),
      creadr: parseU64(o['creadr'], `its[${i}].creadr`),
      cwriter: parseU64(o['cwriter'], `its[${i}].cwriter`),
      baser: baser.map((b, n) => parseU64(b, `its[${i}].baser[${n}]`)),
    };
  });
  const redistList = arr(root['redist'], 'redist');
  if (redistList.length !== nrVcpus) throw new ErrnoError(Errno.EINVAL, `state file: redist has ${redistList.length} entries for ${nrVcpus} vCPUs`);
  const redist = redistList.map((x, v): RedistRegisters => {
    const o = obj(x, `redist[${v}]`);
    return {
      ctlr: parseU64(o['ctlr'], `redist[${v}].ctlr`),
      propbaser: parseU64(o['propbaser'], `redist[${v}].propbaser`),
      pendbaser: parseU64(o['pendbaser'], `redist[${v}].pendbaser`),
    };
  });
  const state: GicState = { nrVcpus, its, redist };
  if (root['layout'] !== undefined) {
    const l = obj(root['layout'], 'layout');
    state.layout = { distBase: Number(parseU64(l['distBase'], 'layout.distBase')), redistBase: Number(parseU64(l['redistBase'], 'layout.redistBase')) };
  }
  return state;
}
