/**
 * The vgic-v3 device (KVM_DEV_TYPE_ARM_VGIC_V3) as vitsd implements it: the LPI part of the
 * redistributors. Groups (kvm-its-abi.md 1.2, 2; protocol.md "Devices and attributes"; KVM
 * vgic-kvm-device.c):
 * - GRP_ADDR: DIST is recorded (the VMM emulates the distributor), REDIST is required before
 *   INIT, REDIST_REGION is -ENXIO (not supported); unknown attr -ENXIO (KVM maps its -ENODEV).
 * - GRP_CTRL: INIT, SAVE_PENDING_TABLES (-ENXIO before INIT); GET is -ENXIO.
 * - GRP_REDIST_REGS: attr = MPIDR << 32 | offset, 32-bit values; unknown MPIDR -EINVAL, before
 *   INIT -EBUSY, unaligned or unknown register -ENXIO.
 * Other groups: -ENXIO.
 */
import { LpiRedistributors } from '../redist/lpi-system.js';
import { vcpuOfMpidr } from '../redist/registers.js';
import { Errno, ErrnoError } from '../util/errno.js';
import { SZ_64K, VGIC_ADDR_UNDEF, checkIorange, overlaps } from './address.js';
import { AttrDevice, noSuchAttr, type AttrGroup } from './device.js';
import {
  GICR_STRIDE,
  KVM_DEV_ARM_VGIC_CTRL_INIT,
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  KVM_VGIC_V3_ADDR_TYPE_DIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION,
} from './types.js';

/** KVM_VGIC_V3_DIST_SIZE. */
export const VGIC_V3_DIST_SIZE = 0x10000n;

/** What the vgic-v3 device needs from the VM. */
export interface VgicHost {
  readonly nrVcpus: number;
  /** The LPI system, null before INIT. */
  readonly lpis: LpiRedistributors | null;
  /** Creates the LPI system and the ITS instances (INIT). */
  initLpis(): void;
  /** KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES (the VM thaws memory if suspended, times it). */
  savePendingTables(): void;
}

const name = 'vgic-v3';

export class VgicV3Device extends AttrDevice {
  readonly type = KVM_DEV_TYPE_ARM_VGIC_V3;
  readonly name = name;
  distBase: bigint | null = null;
  redistBase: bigint | null = null;
  initialized = false;

  protected readonly groups: ReadonlyMap<number, AttrGroup>;

  constructor(id: number, private readonly host: VgicHost) {
    super(id);
    this.groups = new Map<number, AttrGroup>([
      [KVM_DEV_ARM_VGIC_GRP_ADDR, this.addrGroup()],
      [KVM_DEV_ARM_VGIC_GRP_CTRL, this.ctrlGroup()],
      [KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, this.redistRegsGroup()],
    ]);
  }

  /** vCPU whose RD_base frame holds gpa, and the offset in it; null when none (or before INIT). */
  rdFrameOf(gpa: number): { vcpu: number; offset: number } | null {
    if (!this.initialized || this.redistBase === null) return null;
    const rel = gpa - Number(this.redistBase);
    if (rel < 0) return null;
    const vcpu = Math.floor(rel / GICR_STRIDE);
    if (vcpu >= this.host.nrVcpus) return null;
    return { vcpu, offset: rel - vcpu * GICR_STRIDE };
  }

  /** INIT: KVM vgic_init, plus the checks KVM makes when the vgic is first used (map_resources). */
  init(): void {
    if (this.initialized) return;
    const n = this.host.nrVcpus;
    if (this.redistBase === null) throw new ErrnoError(Errno.ENXIO, 'vgic-v3 INIT: the redistributor address (KVM_VGIC_V3_ADDR_TYPE_REDIST) is not set');
    if (n < 1) throw new ErrnoError(Errno.ENXIO, 'vgic-v3 INIT: no vCPUs were declared (SET_VCPUS)');
    const size = BigInt(n * GICR_STRIDE);
    // KVM vgic_v3_check_base: the redistributors must not overlap the distributor nor leave the IPA space.
    if (this.distBase !== null && overlaps(this.redistBase, size, this.distBase, VGIC_V3_DIST_SIZE)) {
      throw new ErrnoError(Errno.EINVAL, `vgic-v3 INIT: ${n} redistributors at 0x${this.redistBase.toString(16)} overlap the distributor`);
    }
    if (this.redistBase + size > 2n ** 52n) {
      throw new ErrnoError(Errno.EINVAL, `vgic-v3 INIT: ${n} redistributors at 0x${this.redistBase.toString(16)} leave the IPA space`);
    }
    this.host.initLpis();
    this.initialized = true;
  }

  private addrGroup(): AttrGroup {
    return {
      set: (attr, value) => {
        if (attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST)) {
          checkIorange(this.distBase, value, SZ_64K, VGIC_V3_DIST_SIZE, 'vgic-v3 distributor');
          this.distBase = value;
          return value;
        }
        if (attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST)) {
          this.setRedistBase(value);
          return value;
        }
        throw noSuchAttr(name, 'GRP_ADDR', attr);
      },
      get: (attr) => {
        if (attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST)) return this.distBase ?? VGIC_ADDR_UNDEF;
        if (attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST)) return this.redistBase ?? VGIC_ADDR_UNDEF;
        throw noSuchAttr(name, 'GRP_ADDR', attr);
      },
      has: (attr) => {
        if (attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST) || attr === BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST)) return;
        // REDIST_REGION (multiple redistributor regions) is not supported by vitsd.
        void KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION;
        throw noSuchAttr(name, 'GRP_ADDR', attr);
      },
    };
  }

  /** KVM vgic_v3_alloc_redist_region for the legacy single region (count = 0). */
  private setRedistBase(base: bigint): void {
    const size = BigInt(this.host.nrVcpus * GICR_STRIDE);
    if (base + size > 0xffff_ffff_ffff_ffffn) throw new ErrnoError(Errno.EINVAL, 'vgic-v3 redistributor region wraps around');
    if (this.redistBase !== null) throw new ErrnoError(Errno.EEXIST, 'vgic-v3 redistributor address is already set');
    if (this.distBase !== null && overlaps(base, size, this.distBase, VGIC_V3_DIST_SIZE)) {
      throw new ErrnoError(Errno.EINVAL, `vgic-v3 redistributor region at 0x${base.toString(16)} overlaps the distributor`);
    }
    checkIorange(null, base, SZ_64K, size, 'vgic-v3 redistributor');
    this.redistBase = base;
  }

  private ctrlGroup(): AttrGroup {
    return {
      set: (attr) => {
        if (attr === BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT)) {
          this.init();
          return 0n;
        }
        if (attr === BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES)) {
          if (!this.initialized) throw new ErrnoError(Errno.ENXIO, 'SAVE_PENDING_TABLES: the vgic-v3 is not initialised');
          this.host.savePendingTables();
          return 0n;
        }
        throw noSuchAttr(name, 'GRP_CTRL', attr);
      },
      get: (attr) => {
        throw noSuchAttr(name, 'GRP_CTRL', attr);
      },
      has: (attr) => {
        if (attr === BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT) || attr === BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES)) return;
        throw noSuchAttr(name, 'GRP_CTRL', attr);
      },
    };
  }

  /** KVM vgic_v3_parse_attr: the vCPU named by the MPIDR in bits 63:32 (-EINVAL if none) and the offset. */
  private parseRedistAttr(attr: bigint): { vcpu: number; offset: number } {
    const mpidr = Number((attr >> 32n) & 0xffffffffn);
    const vcpu = vcpuOfMpidr(mpidr, this.host.nrVcpus);
    if (vcpu < 0) throw new ErrnoError(Errno.EINVAL, `GRP_REDIST_REGS: no vCPU has MPIDR 0x${mpidr.toString(16)}`);
    return { vcpu, offset: Number(attr & 0xffffffffn) };
  }

  private redistAccess(attr: bigint): { lpis: LpiRedistributors; vcpu: number; offset: number } {
    const { vcpu, offset } = this.parseRedistAttr(attr);
    const lpis = this.host.lpis;
    if (!this.initialized || lpis === null) throw new ErrnoError(Errno.EBUSY, 'GRP_REDIST_REGS: the vgic-v3 is not initialised');
    // KVM vgic_uaccess: 32-bit accesses only, naturally aligned, to a known register.
    if ((offset & 3) !== 0 || !LpiRedistributors.isImplementedOffset(offset)) {
      throw new ErrnoError(Errno.ENXIO, `GRP_REDIST_REGS: no redistributor register at offset 0x${offset.toString(16)}`);
    }
    return { lpis, vcpu, offset };
  }

  private redistRegsGroup(): AttrGroup {
    return {
      set: (attr, value) => {
        const { lpis, vcpu, offset } = this.redistAccess(attr);
        lpis.mmioWrite(vcpu, offset, 4, value & 0xffffffffn);
        return lpis.mmioRead(vcpu, offset, 4) ?? 0n;
      },
      get: (attr) => {
        const { lpis, vcpu, offset } = this.redistAccess(attr);
        return lpis.mmioRead(vcpu, offset, 4) ?? 0n;
      },
      has: (attr) => {
        const { offset } = this.parseRedistAttr(attr);
        if ((offset & 3) !== 0 || !LpiRedistributors.isImplementedOffset(offset)) {
          throw new ErrnoError(Errno.ENXIO, `GRP_REDIST_REGS: no redistributor register at offset 0x${offset.toString(16)}`);
        }
      },
    };
  }
}
