/**
 * What the reference guest's "CPU" sees: MMIO through a VitsdTarget (readl/readq/writel/
 * writeq, Linux's accessor widths) and plain loads/stores to guest RAM through a
 * GuestMemory. Both can be swapped at once (attach) when the VM migrates: the guest's own
 * state (its driver structures) moves with it, only the host side changes.
 *
 * An optional trace hook sees every access, so tests can check the exact sequence.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { VitsdTarget } from './types.js';

export type GuestTraceEvent =
  | { kind: 'mmio-read'; gpa: number; size: number; value: bigint }
  | { kind: 'mmio-write'; gpa: number; size: number; value: bigint }
  | { kind: 'command'; its: number; slot: number; text: string }
  | { kind: 'note'; text: string };

export type GuestTraceHook = (event: GuestTraceEvent) => void;

export class GuestBus {
  private _target: VitsdTarget;
  private _memory: GuestMemory;
  trace: GuestTraceHook | null;
  /** MMIO accesses made (for statistics). */
  mmioCount = 0;

  constructor(target: VitsdTarget, memory: GuestMemory, trace: GuestTraceHook | null = null) {
    this._target = target;
    this._memory = memory;
    this.trace = trace;
  }

  get target(): VitsdTarget {
    return this._target;
  }
  get memory(): GuestMemory {
    return this._memory;
  }

  /** Points the guest at another host (after a migration). */
  attach(target: VitsdTarget, memory: GuestMemory): void {
    this._target = target;
    this._memory = memory;
  }

  async read(gpa: number, size: number): Promise<bigint> {
    this.mmioCount++;
    const value = await this._target.mmioRead(gpa, size);
    this.trace?.({ kind: 'mmio-read', gpa, size, value });
    return value;
  }

  async write(gpa: number, size: number, value: bigint): Promise<void> {
    this.mmioCount++;
    this.trace?.({ kind: 'mmio-write', gpa, size, value });
    await this._target.mmioWrite(gpa, size, value);
  }

  async readl(gpa: number): Promise<number> {
    return Number((await this.read(gpa, 4)) & 0xffffffffn);
  }
  readq(gpa: number): Promise<bigint> {
    return this.read(gpa, 8);
  }
  writel(gpa: number, value: number): Promise<void> {
    return this.write(gpa, 4, BigInt(value >>> 0));
  }
  writeq(gpa: number, value: bigint): Promise<void> {
    return this.write(gpa, 8, BigInt.asUintN(64, value));
  }

  note(text: string): void {
    this.trace?.({ kind: 'note', text });
  }
}
