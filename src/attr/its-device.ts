/**
 * One ITS device (KVM_DEV_TYPE_ARM_VGIC_ITS). Groups (kvm-its-abi.md 1.2-1.7):
 * - GRP_ADDR: attr KVM_VGIC_ITS_ADDR_TYPE only (else -ENODEV, set and get); set: -EEXIST if
 *   set, -EINVAL unless 64 KiB aligned, -E2BIG beyond the IPA space; get: base or all-ones.
 * - GRP_CTRL: INIT (no-op), ITS_CTRL_RESET, ITS_SAVE_TABLES, ITS_RESTORE_TABLES; other -ENXIO;
 *   GET -ENXIO.
 * - GRP_ITS_REGS: offset alignment (-EINVAL) first, then base address not set (-ENXIO), then
 *   the ITS's own register access (its errno).
 * HAS: 0 for the attributes above (ITS_REGS: aligned offset in a register region, base not
 * required), -ENXIO otherwise (-EINVAL for a misaligned ITS_REGS offset).
 *
 * The Its instance exists once the vgic-v3 is initialised (it needs the VM-wide LPI system,
 * which needs the final vCPU count); before that, what needs it fails with -ENXIO ("not
 * properly configured") except HAS and the address.
 */
import type { ItsTables } from '../its/abi/abi.js';
import type { RestoreSummary } from '../its/abi/restore.js';
import type { SaveResult } from '../its/abi/save.js';
import { GITS_TYPER, ITS_FRAME_SIZE } from '../its/types.js';
import { ItsRegisterFile } from '../its/registers.js';
import type { Its } from '../its/its.js';
import { Errno, ErrnoError } from '../util/errno.js';
import { SZ_64K, VGIC_ADDR_UNDEF, checkIorange } from './address.js';
import { AttrDevice, noSuchAttr, type AttrGroup } from './device.js';
import {
  KVM_DEV_ARM_ITS_CTRL_RESET,
  KVM_DEV_ARM_ITS_RESTORE_TABLES,
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_CTRL_INIT,
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_ITS_REGS,
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_VGIC_ITS_ADDR_TYPE,
} from './types.js';

/** First ID register offset (GITS_PIDR4): from here on, 32-bit registers. */
const GITS_PIDR4 = 0xffd0n;

/** What an ITS device needs from the VM (timing and memory thawing of the controls). */
export interface ItsHost {
  saveTables(dev: ItsDeviceNode): SaveResult;
  restoreTables(dev: ItsDeviceNode): RestoreSummary;
  resetIts(dev: ItsDeviceNode): void;
}

/** Register-file stand-in answering HAS_DEVICE_ATTR before the Its instance exists. */
let probeRegisters: ItsRegisterFile | null = null;
function probe(): ItsRegisterFile {
  probeRegisters ??= new ItsRegisterFile({ processCommands() {}, baserWritten() {}, abiSelected() {} });
  return probeRegisters;
}

export class ItsDeviceNode extends AttrDevice {
  readonly type = KVM_DEV_TYPE_ARM_VGIC_ITS;
  readonly name: string;
  /** Base of the 128 KiB frame, -1 while not set. */
  base = -1;
  its: Its | null = null;
  tables: ItsTables | null = null;
  protected readonly groups: ReadonlyMap<number, AttrGroup>;

  constructor(id: number, private readonly host: ItsHost) {
    super(id);
    this.name = `ITS ${id}`;
    this.groups = new Map<number, AttrGroup>([
      [KVM_DEV_ARM_VGIC_GRP_ADDR, this.addrGroup()],
      [KVM_DEV_ARM_VGIC_GRP_CTRL, this.ctrlGroup()],
      [KVM_DEV_ARM_VGIC_GRP_ITS_REGS, this.regsGroup()],
    ]);
  }

  /** True when gpa lies in this ITS's 128 KiB frame. */
  contains(gpa: number): boolean {
    return this.base >= 0 && gpa >= this.base && gpa < this.base + ITS_FRAME_SIZE;
  }

  private instance(what: string): Its {
    if (this.its === null) throw new ErrnoError(Errno.ENXIO, `${this.name}: ${what}: the vgic-v3 is not initialised yet`);
    return this.its;
  }

  private addrGroup(): AttrGroup {
    const isItsAddr = (attr: bigint): boolean => attr === BigInt(KVM_VGIC_ITS_ADDR_TYPE);
    return {
      set: (attr, value) => {
        if (!isItsAddr(attr)) throw noSuchAttr(this.name, 'GRP_ADDR', attr, Errno.ENODEV);
        checkIorange(this.base >= 0 ? BigInt(this.base) : null, value, SZ_64K, BigInt(ITS_FRAME_SIZE), this.name);
        this.base = Number(value);
        return value;
      },
      get: (attr) => {
        if (!isItsAddr(attr)) throw noSuchAttr(this.name, 'GRP_ADDR', attr, Errno.ENODEV);
        return this.base >= 0 ? BigInt(this.base) : VGIC_ADDR_UNDEF;
      },
      has: (attr) => {
        if (!isItsAddr(attr)) throw noSuchAttr(this.name, 'GRP_ADDR', attr);
      },
    };
  }

  private ctrlGroup(): AttrGroup {
    const controls = new Map<bigint, () => void>([
      [BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), () => {}], // nothing to do (KVM)
      [BigInt(KVM_DEV_ARM_ITS_CTRL_RESET), () => {
        this.instance('CTRL_RESET');
        this.host.resetIts(this);
      }],
      [BigInt(KVM_DEV_ARM_ITS_SAVE_TABLES), () => {
        this.instance('SAVE_TABLES');
        this.host.saveTables(this);
      }],
      [BigInt(KVM_DEV_ARM_ITS_RESTORE_TABLES), () => {
        this.instance('RESTORE_TABLES');
        this.host.restoreTables(this);
      }],
    ]);
    return {
      set: (attr) => {
        const control = controls.get(attr);
        if (control === undefined) throw noSuchAttr(this.name, 'GRP_CTRL', attr);
        control();
        return 0n;
      },
      get: (attr) => {
        throw noSuchAttr(this.name, 'GRP_CTRL', attr);
      },
      has: (attr) => {
        if (!controls.has(attr)) throw noSuchAttr(this.name, 'GRP_CTRL', attr);
      },
    };
  }

  /** KVM vgic_its_attr_regs_access: alignment, then base address, then the register. */
  private regOffset(attr: bigint): number {
    const align = attr < BigInt(GITS_TYPER) || attr >= GITS_PIDR4 ? 3n : 7n;
    if ((attr & align) !== 0n) {
      throw new ErrnoError(Errno.EINVAL, `${this.name}: register offset 0x${attr.toString(16)} is not ${align + 1n}-byte aligned`);
    }
    if (this.base < 0) throw new ErrnoError(Errno.ENXIO, `${this.name}: the ITS base address is not set`);
    if (attr > 0xffffn) throw new ErrnoError(Errno.ENXIO, `${this.name}: no ITS register at offset 0x${attr.toString(16)}`);
    return Number(attr);
  }

  private regsGroup(): AttrGroup {
    return {
      set: (attr, value) => {
        const offset = this.regOffset(attr);
        const its = this.instance('GRP_ITS_REGS');
        its.setReg(offset, value);
        return its.getReg(offset);
      },
      get: (attr) => {
        const offset = this.regOffset(attr);
        return this.instance('GRP_ITS_REGS').getReg(offset);
      },
      has: (attr) => {
        const align = attr < BigInt(GITS_TYPER) || attr >= GITS_PIDR4 ? 3n : 7n;
        if ((attr & align) !== 0n) {
          throw new ErrnoError(Errno.EINVAL, `${this.name}: register offset 0x${attr.toString(16)} is not ${align + 1n}-byte aligned`);
        }
        if (attr > 0xffffn) throw new ErrnoError(Errno.ENXIO, `${this.name}: no ITS register at offset 0x${attr.toString(16)}`);
        (this.its?.registers ?? probe()).hasReg(Number(attr));
      },
    };
  }
}
