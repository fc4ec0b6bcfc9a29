/**
 * The guest's ITS command queue, posted the way Linux posts it (its-model.md 5.3;
 * irq-gic-v3-its.c its_send_single_command / its_allocate_entry / its_post_commands /
 * its_wait_for_range_completion):
 *
 *   slot = next free slot (wait while the queue is full: (widx+1) % N == CREADR/32)
 *   zero the slot, encode the command into it (a store to guest RAM)
 *   if the command needs it: a SYNC in the next slot, aimed at the collection's target
 *   rd_idx = readl(CREADR); writel(offset of the next free slot, CWRITER)
 *   poll readl(CREADR), wrap-aware, until it has passed the last posted slot
 *
 * Every wait is bounded (Linux: 1 s of 1 us polls). A timeout is counted and reported,
 * and the guest carries on, as Linux does ("ITS queue timeout").
 */
import { GITS_CREADR, GITS_CWRITER } from './gic-regs.js';
import type { GuestBus } from './guest-bus.js';
import { buildSync, describeCommand, ITS_COMMAND_SIZE, type ItsCommandBlock } from './its-command.js';

/** Linux ITS_CMD_QUEUE_SZ. */
export const ITS_CMD_QUEUE_SZ = 0x10000;
export const ITS_CMD_QUEUE_NR_ENTRIES = ITS_CMD_QUEUE_SZ / ITS_COMMAND_SIZE;

export interface CommandQueueStats {
  posted: number;
  /** Batches whose completion was not seen within the poll budget. */
  timeouts: number;
  /** Slots that could not be allocated because the queue never drained. */
  queueFull: number;
}

export class GuestCommandQueue {
  /** Index of the next free slot (Linux its->cmd_write - its->cmd_base). */
  writeIndex = 0;
  readonly stats: CommandQueueStats = { posted: 0, timeouts: 0, queueFull: 0 };

  constructor(
    private readonly bus: GuestBus,
    readonly itsIndex: number,
    readonly itsBase: number,
    /** Guest physical address of the 64 KiB queue. */
    readonly gpa: number,
    /** MMIO polls before giving up on one wait (Linux: 1,000,000 x 1 us). */
    readonly pollBudget = 1000,
  ) {}

  private async readCreadr(): Promise<number> {
    return (await this.bus.readl(this.itsBase + GITS_CREADR)) & 0xfffe0;
  }

  private async queueFull(): Promise<boolean> {
    const ridx = (await this.readCreadr()) / ITS_COMMAND_SIZE;
    return (this.writeIndex + 1) % ITS_CMD_QUEUE_NR_ENTRIES === ridx;
  }

  /** its_allocate_entry: returns the slot index, or -1 if the queue never drained. */
  private async allocateEntry(): Promise<number> {
    let budget = this.pollBudget;
    while (await this.queueFull()) {
      if (--budget <= 0) {
        this.stats.queueFull++;
        this.bus.note(`ITS${this.itsIndex}: ITS queue not draining`);
        return -1;
      }
    }
    const slot = this.writeIndex;
    this.writeIndex = (this.writeIndex + 1) % ITS_CMD_QUEUE_NR_ENTRIES;
    // Linux clears the four words before encoding.
    const gpa = this.gpa + slot * ITS_COMMAND_SIZE;
    this.bus.memory.fill(gpa, ITS_COMMAND_SIZE, 0);
    return slot;
  }

  private writeSlot(slot: number, cmd: ItsCommandBlock): void {
    const gpa = this.gpa + slot * ITS_COMMAND_SIZE;
    for (let dw = 0; dw < 4; dw++) this.bus.memory.writeU64Big(gpa + dw * 8, cmd[dw as 0 | 1 | 2 | 3]);
    this.stats.posted++;
    this.bus.trace?.({ kind: 'command', its: this.itsIndex, slot, text: describeCommand(cmd) });
  }

  /**
   * Posts one command, followed by SYNC(syncTarget) when syncTarget is given (the builder
   * returned a collection), then waits for completion. Returns false on a timeout or a
   * queue that never drained (the guest logs it and carries on).
   */
  async post(cmd: ItsCommandBlock, syncTarget: bigint | null): Promise<boolean> {
    const slot = await this.allocateEntry();
    if (slot < 0) return false;
    this.writeSlot(slot, cmd);
    if (syncTarget !== null) {
      const syncSlot = await this.allocateEntry();
      if (syncSlot >= 0) this.writeSlot(syncSlot, buildSync(syncTarget));
    }
    const rdIdx = await this.readCreadr();
    const next = this.writeIndex * ITS_COMMAND_SIZE;
    await this.bus.writel(this.itsBase + GITS_CWRITER, next);
    return this.waitForRangeCompletion(rdIdx, next);
  }

  /** its_wait_for_range_completion: linearises the read pointer across a wrap. */
  private async waitForRangeCompletion(prevIdxIn: number, toIdxIn: number): Promise<boolean> {
    let prevIdx = prevIdxIn;
    let toIdx = toIdxIn;
    if (toIdx < prevIdx) toIdx += ITS_CMD_QUEUE_SZ;
    let linearIdx = prevIdx;
    let budget = this.pollBudget;
    for (;;) {
      const rdIdx = await this.readCreadr();
      let delta = rdIdx - prevIdx;
      if (rdIdx < prevIdx) delta += ITS_CMD_QUEUE_SZ;
      linearIdx += delta;
      if (linearIdx >= toIdx) return true;
      if (--budget <= 0) {
        this.stats.timeouts++;
        this.bus.note(`ITS${this.itsIndex}: ITS queue timeout (${toIdx} ${linearIdx})`);
        return false;
      }
      prevIdx = rdIdx;
    }
  }
}
