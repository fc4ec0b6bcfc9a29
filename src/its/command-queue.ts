/**
 * The command queue processor (vgic_its_process_commands; kvm-its-abi.md 6.1): from CREADR
 * to CWRITER in the queue at CBASER.PA, 32 bytes per command, wrapping at the queue size.
 * A command that cannot be read is skipped; CREADR always advances; results are counted and
 * otherwise discarded. Bounded: at most one pass over the queue per trigger.
 */
import type { CommandContext } from './commands/context.js';
import { COMMAND_TABLE } from './commands/dispatch.js';
import { CMD_OK, COMMAND_ERROR_NAMES, E_CMD_READ_FAULT, E_INTERNAL } from './commands/errors.js';
import { COMMAND_WORDS } from './commands/fields.js';
import { ITS_CMD_SIZE } from './constants.js';
import type { ItsRegisterFile } from './registers.js';

/** Index of the "total" counter in CommandProcessor.commandCounts (after the 256 opcodes). */
const TOTAL = 256;

export class CommandProcessor {
  /** The command being executed, as 8 u32 words (reused: no allocation per command). */
  private readonly words = new Uint32Array(COMMAND_WORDS);
  /** Commands executed by command number; [256] = total. */
  readonly commandCounts = new Float64Array(257);
  /** Outcomes by error code (./commands/errors.ts). */
  readonly errorCounts = new Float64Array(COMMAND_ERROR_NAMES.length);
  private running = false;

  constructor(
    private readonly regs: ItsRegisterFile,
    private readonly ctx: CommandContext,
  ) {}

  /** Runs every queued command if the ITS is enabled. Never throws. */
  process(): void {
    const regs = this.regs;
    if (!regs.enabled || this.running) return;
    this.running = true;
    try {
      const size = regs.queueBytes;
      const base = regs.queueBase;
      let budget = size / ITS_CMD_SIZE;
      let creadr = regs.creadr;
      while (creadr !== regs.cwriter && budget-- > 0) {
        this.executeAt(base + creadr);
        creadr += ITS_CMD_SIZE;
        if (creadr >= size) creadr = 0;
        regs.creadr = creadr;
      }
    } finally {
      this.running = false;
    }
  }

  private executeAt(gpa: number): void {
    const memory = this.ctx.memory;
    const w = this.words;
    let result: number;
    try {
      if (!memory.contains(gpa, ITS_CMD_SIZE)) {
        this.errorCounts[E_CMD_READ_FAULT]!++;
        return;
      }
      memory.readU64Into(gpa, w, 0);
      memory.readU64Into(gpa + 8, w, 2);
      memory.readU64Into(gpa + 16, w, 4);
      memory.readU64Into(gpa + 24, w, 6);
    } catch {
      this.errorCounts[E_CMD_READ_FAULT]!++;
      return;
    }
    const opcode = w[0]! & 0xff;
    this.commandCounts[opcode]!++;
    this.commandCounts[TOTAL]!++;
    const spec = COMMAND_TABLE[opcode];
    if (spec == null) return; // unknown commands (GICv4 V* included) are ignored
    try {
      result = spec.run(this.ctx, w);
    } catch {
      result = E_INTERNAL;
    }
    if (result !== CMD_OK) this.errorCounts[result]!++;
  }

  /** stats.commands: counts by command name (unknown numbers as "UNKNOWN") plus "total". */
  commandStats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const spec of COMMAND_TABLE) if (spec) out[spec.name] = 0;
    out['UNKNOWN'] = 0;
    for (let op = 0; op < 256; op++) {
      const n = this.commandCounts[op]!;
      if (n === 0) continue;
      const name = COMMAND_TABLE[op]?.name ?? 'UNKNOWN';
      out[name] = (out[name] ?? 0) + n;
    }
    out['total'] = this.commandCounts[TOTAL]!;
    return out;
  }

  /** stats.commandErrors: counts by reason name. */
  errorStats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 1; i < COMMAND_ERROR_NAMES.length; i++) out[COMMAND_ERROR_NAMES[i]!] = this.errorCounts[i]!;
    return out;
  }

  /** Counts an outcome produced outside process() (table writer faults from other paths). */
  count(code: number): void {
    if (code > 0 && code < this.errorCounts.length) this.errorCounts[code]!++;
  }
}
