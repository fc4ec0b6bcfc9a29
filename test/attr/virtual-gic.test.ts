/**
 * The VM-level device API: every group / attribute / errno / ordering rule of
 * kvm-its-abi.md 1.2-1.7 and 2 and protocol.md ("Devices and attributes", "Guest MMIO",
 * "MSIs", "Suspend and resume"). Expected values come from those documents.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { VirtualGic } from '../../src/attr/virtual-gic.js';
import {
  KVM_DEV_ARM_ITS_CTRL_RESET,
  KVM_DEV_ARM_ITS_RESTORE_TABLES,
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_CTRL_INIT,
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_DIST_REGS,
  KVM_DEV_ARM_VGIC_GRP_ITS_REGS,
  KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  KVM_VGIC_ITS_ADDR_TYPE,
  KVM_VGIC_V3_ADDR_TYPE_DIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION,
} from '../../src/attr/types.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { GuestMemoryFrozen } from '../../src/memory/errors.js';
import { ErrnoError, Errno } from '../../src/util/errno.js';

const RAM = 0x4000_0000;
const DIST = 0x0800_0000;
const ITS = 0x0808_0000;
const REDIST = 0x080a_0000;
const UNDEF = 0xffff_ffff_ffff_ffffn;
const ADDR = KVM_DEV_ARM_VGIC_GRP_ADDR;
const CTRL = KVM_DEV_ARM_VGIC_GRP_CTRL;
const REGS = KVM_DEV_ARM_VGIC_GRP_ITS_REGS;
const RDREGS = KVM_DEV_ARM_VGIC_GRP_REDIST_REGS;
const b = BigInt;

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.errno;
    throw e;
  }
  return 0;
}

function ram(): ArrayBufferGuestMemory {
  return new ArrayBufferGuestMemory([{ gpa: RAM, size: 4 * 1024 * 1024 }]);
}

/** vgic-v3 (addresses set, initialised, 4 vCPUs) + one ITS at ITS. */
function fullVm(nrVcpus = 4): { vm: VirtualGic; vgic: number; its: number; memory: ArrayBufferGuestMemory } {
  const memory = ram();
  const vm = new VirtualGic({ memory });
  vm.setVcpus(nrVcpus);
  const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
  vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), b(DIST));
  vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST));
  vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  const its = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
  vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), b(ITS));
  return { vm, vgic, its, memory };
}

const rdAttr = (mpidr: number, offset: number): bigint => (b(mpidr) << 32n) | b(offset);

describe('CREATE_DEVICE', () => {
  it('an ITS needs a vgic-v3 (-ENODEV); unknown types are -ENODEV; a second vgic-v3 is -EEXIST', () => {
    const vm = new VirtualGic();
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false))).toBe(Errno.ENODEV);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, true))).toBe(Errno.ENODEV);
    expect(errnoOf(() => vm.createDevice(5, false))).toBe(Errno.ENODEV); // ARM_VGIC_V2
    expect(errnoOf(() => vm.createDevice(99, true))).toBe(Errno.ENODEV);
    expect(vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, true)).toBe(0);
    expect(vm.hasState).toBe(false); // TEST created nothing
    const id = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    expect(id).toBeGreaterThan(0);
    expect(vm.hasState).toBe(true);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false))).toBe(Errno.EEXIST);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, true))).toBe(Errno.EEXIST);
  });

  it('16 ITSes per VM; the 17th is -ENOSPC (also with TEST); ids are distinct', () => {
    const vm = new VirtualGic();
    vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    expect(vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, true)).toBe(0);
    const ids = new Set<number>();
    for (let i = 0; i < 16; i++) ids.add(vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false));
    expect(ids.size).toBe(16);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, true))).toBe(Errno.ENOSPC);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false))).toBe(Errno.ENOSPC);
  });

  it('an unknown device id is -EBADF for SET, GET and HAS', () => {
    const vm = new VirtualGic();
    expect(errnoOf(() => vm.setDeviceAttr(7, ADDR, 2n, 0n))).toBe(Errno.EBADF);
    expect(errnoOf(() => vm.getDeviceAttr(7, ADDR, 2n))).toBe(Errno.EBADF);
    expect(errnoOf(() => vm.hasDeviceAttr(7, ADDR, 2n))).toBe(Errno.EBADF);
  });

  it('creating an ITS resets GICR_PROPBASER to its initial value 0x580 (KVM)', () => {
    const { vm, vgic } = fullVm();
    // Value that survives KVM's sanitising (RaWb inner cache, inner shareable, IDbits 15).
    vm.setDeviceAttr(vgic, RDREGS, rdAttr(0, 0x70), b(RAM + 0x58f));
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(0, 0x70))).toBe(b(RAM + 0x58f));
    vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    // 0x580 = InnerCache RaWb (3 << 7) | InnerShareable (1 << 10)
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(0, 0x70))).toBe(0x580n);
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(0, 0x74))).toBe(0n);
  });
});

describe('an ITS created before the vgic-v3 INIT', () => {
  it('gets its instance at INIT, with GICR_PROPBASER reset and the ITS usable', () => {
    const vm = new VirtualGic({ memory: ram() });
    vm.setVcpus(2);
    const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    const its = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), b(ITS));
    expect(vm.itsOf(its)).toBeNull();
    expect(errnoOf(() => vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n))).toBe(Errno.ENXIO);
    expect(errnoOf(() => vm.mmioRead(ITS + 4, 4))).toBe(Errno.ENXIO);
    expect(vm.signalMsi(ITS + 0x10040, 0, 0, 1, 0)).toBe(-Errno.EBUSY); // as a disabled ITS
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST));
    vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
    expect(vm.itsOf(its)).not.toBeNull();
    expect(vm.mmioRead(ITS + 4, 4)).toBe(0x4b00_043bn);
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(0, 0x70))).toBe(0x580n);
    // GICR_TYPER.PLPIS (bit 0) is set: the VM has an ITS.
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(1, 0x8)) & 1n).toBe(1n);
  });
});

describe('SET_VCPUS', () => {
  it('1..512, else -EINVAL; -EBUSY after the vgic-v3 INIT', () => {
    const vm = new VirtualGic();
    for (const n of [0, 513, 1.5, -1]) expect(errnoOf(() => vm.setVcpus(n))).toBe(Errno.EINVAL);
    vm.setVcpus(512);
    vm.setVcpus(2); // may change until INIT
    expect(vm.nrVcpus).toBe(2);
    const { vm: vm2 } = fullVm();
    expect(errnoOf(() => vm2.setVcpus(8))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm2.setVcpus(0))).toBe(Errno.EINVAL); // a bad count is reported first
  });
});

describe('vgic-v3 KVM_DEV_ARM_VGIC_GRP_ADDR', () => {
  let vm: VirtualGic;
  let vgic: number;
  beforeEach(() => {
    vm = new VirtualGic();
    vm.setVcpus(4);
    vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
  });

  it('DIST: undefined reads all-ones; 64 KiB alignment (-EINVAL); set once (-EEXIST); beyond 52 bits -E2BIG', () => {
    expect(vm.getDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST))).toBe(UNDEF);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), b(DIST + 0x1000)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), 1n << 52n))).toBe(Errno.E2BIG);
    expect(vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), b(DIST))).toBe(b(DIST));
    expect(vm.getDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST))).toBe(b(DIST));
    // Already set: -EEXIST comes before the alignment check (vgic_check_iorange).
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), 0x1000n))).toBe(Errno.EEXIST);
  });

  it('REDIST: alignment, no overlap with the distributor, set once', () => {
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), b(DIST));
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST + 0x8000)))).toBe(Errno.EINVAL);
    // 4 redistributors x 128 KiB starting 64 KiB below the distributor overlap it.
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(DIST - 0x1_0000)))).toBe(Errno.EINVAL);
    expect(vm.getDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST))).toBe(UNDEF);
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST));
    expect(vm.getDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST))).toBe(b(REDIST));
    expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST + 0x100_0000)))).toBe(Errno.EEXIST);
  });

  it('REDIST_REGION and unknown attrs are -ENXIO (set, get, has); DIST and REDIST are HAS', () => {
    for (const attr of [KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION, 0, 4, 99]) {
      expect(errnoOf(() => vm.setDeviceAttr(vgic, ADDR, b(attr), 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.getDeviceAttr(vgic, ADDR, b(attr)))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.hasDeviceAttr(vgic, ADDR, b(attr)))).toBe(Errno.ENXIO);
    }
    vm.hasDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST));
    vm.hasDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST));
  });
});

describe('vgic-v3 KVM_DEV_ARM_VGIC_GRP_CTRL', () => {
  it('INIT needs the redistributor address (-ENXIO) and vCPUs; is idempotent; SAVE_PENDING_TABLES needs INIT', () => {
    const vm = new VirtualGic({ memory: ram() });
    const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n))).toBe(Errno.ENXIO);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n))).toBe(Errno.ENXIO);
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST));
    expect(errnoOf(() => vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n))).toBe(Errno.ENXIO); // no vCPUs
    vm.setVcpus(2);
    expect(vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n)).toBe(0n);
    vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
    vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n);
    expect(vm.stats.pendingSaves.count).toBe(1);
  });

  it('INIT fails with -EINVAL when the final redistributor region overlaps the distributor', () => {
    const vm = new VirtualGic();
    const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST), b(DIST));
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(DIST - 0x2_0000)); // 0 vCPUs yet: accepted
    vm.setVcpus(2);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n))).toBe(Errno.EINVAL);
  });

  it('GET is -ENXIO; HAS accepts INIT and SAVE_PENDING_TABLES only; the ITS controls are -ENXIO here', () => {
    const { vm, vgic } = fullVm();
    expect(errnoOf(() => vm.getDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT)))).toBe(Errno.ENXIO);
    vm.hasDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT));
    vm.hasDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES));
    for (const attr of [KVM_DEV_ARM_ITS_SAVE_TABLES, KVM_DEV_ARM_ITS_RESTORE_TABLES, KVM_DEV_ARM_ITS_CTRL_RESET, 9]) {
      expect(errnoOf(() => vm.hasDeviceAttr(vgic, CTRL, b(attr)))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.setDeviceAttr(vgic, CTRL, b(attr), 0n))).toBe(Errno.ENXIO);
    }
  });

  it('groups the VMM emulates (DIST_REGS, NR_IRQS, ...) are -ENXIO', () => {
    const { vm, vgic } = fullVm();
    for (const g of [KVM_DEV_ARM_VGIC_GRP_DIST_REGS, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 6, 7, 8, 9, 42]) {
      expect(errnoOf(() => vm.setDeviceAttr(vgic, g, 0n, 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.getDeviceAttr(vgic, g, 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.hasDeviceAttr(vgic, g, 0n))).toBe(Errno.ENXIO);
    }
  });
});

describe('vgic-v3 KVM_DEV_ARM_VGIC_GRP_REDIST_REGS', () => {
  it('attr = MPIDR << 32 | offset; 32-bit halves of PROPBASER/PENDBASER; unknown MPIDR -EINVAL; unknown offset -ENXIO', () => {
    const { vm, vgic } = fullVm(20);
    // vCPU 17: Aff0 = 17 & 0xf = 1, Aff1 = 17 >> 4 = 1 -> MPIDR 0x101; GICR_TYPER[31:8] = Processor_Number 17
    expect((vm.getDeviceAttr(vgic, RDREGS, rdAttr(0x101, 0x8)) >> 8n) & 0xffffn).toBe(17n);
    // GICR_TYPER[63:32] = affinity 0x0000_0101 -> upper half at offset 0xC
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(0x101, 0xc))).toBe(0x101n);
    // Aff0 >= 16 never names a vCPU; Aff3 != 0 neither; vCPU 20 does not exist.
    for (const mpidr of [0x10, 0x0100_0000, 0x104]) expect(errnoOf(() => vm.getDeviceAttr(vgic, RDREGS, rdAttr(mpidr, 0x70)))).toBe(Errno.EINVAL);
    // PENDBASER of vCPU 3 in two halves: set returns what a GET now returns.
    // (InnerCache 0 = nCnB is sanitised to RaWb: 3 << 7 = 0x180 appears.)
    expect(vm.setDeviceAttr(vgic, RDREGS, rdAttr(3, 0x78), b(RAM + 0x10000))).toBe(b(RAM + 0x10180));
    expect(vm.setDeviceAttr(vgic, RDREGS, rdAttr(3, 0x7c), 0n)).toBe(0n);
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(3, 0x78))).toBe(b(RAM + 0x10180));
    expect(vm.lpis!.pendbaser(3)).toBe(b(RAM + 0x10180));
    // Only the low 32 bits of the value are used.
    vm.setDeviceAttr(vgic, RDREGS, rdAttr(2, 0x70), 0xdead_0000_4000_000fn);
    expect(vm.getDeviceAttr(vgic, RDREGS, rdAttr(2, 0x74))).toBe(0n);
    for (const off of [0x10, 0x2, 0x71, 0x1_0000, 0xffff_fff0]) {
      expect(errnoOf(() => vm.getDeviceAttr(vgic, RDREGS, rdAttr(0, off)))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.setDeviceAttr(vgic, RDREGS, rdAttr(0, off), 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.hasDeviceAttr(vgic, RDREGS, rdAttr(0, off)))).toBe(Errno.ENXIO);
    }
    for (const off of [0x0, 0x4, 0x8, 0xc, 0x70, 0x74, 0x78, 0x7c]) vm.hasDeviceAttr(vgic, RDREGS, rdAttr(1, off));
    expect(errnoOf(() => vm.hasDeviceAttr(vgic, RDREGS, rdAttr(0x10, 0x70)))).toBe(Errno.EINVAL);
  });

  it('before INIT: -EBUSY for GET/SET (after the MPIDR check); HAS works', () => {
    const vm = new VirtualGic();
    vm.setVcpus(2);
    const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    expect(errnoOf(() => vm.getDeviceAttr(vgic, RDREGS, rdAttr(1, 0x70)))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.setDeviceAttr(vgic, RDREGS, rdAttr(1, 0x70), 0n))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.getDeviceAttr(vgic, RDREGS, rdAttr(2, 0x70)))).toBe(Errno.EINVAL);
    vm.hasDeviceAttr(vgic, RDREGS, rdAttr(1, 0x70));
  });
});

describe('ITS KVM_DEV_ARM_VGIC_GRP_ADDR (1.3)', () => {
  it('attr must be KVM_VGIC_ITS_ADDR_TYPE (-ENODEV); 64 KiB aligned (-EINVAL); once (-EEXIST); get all-ones until set', () => {
    const { vm } = fullVm();
    const its = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    expect(errnoOf(() => vm.setDeviceAttr(its, ADDR, 3n, b(ITS)))).toBe(Errno.ENODEV);
    expect(errnoOf(() => vm.getDeviceAttr(its, ADDR, 3n))).toBe(Errno.ENODEV);
    expect(errnoOf(() => vm.hasDeviceAttr(its, ADDR, 3n))).toBe(Errno.ENXIO);
    vm.hasDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE));
    expect(vm.getDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE))).toBe(UNDEF);
    expect(errnoOf(() => vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), 0x0a00_8000n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), (1n << 52n) - 0x1_0000n))).toBe(Errno.E2BIG);
    expect(vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), 0x0a01_0000n)).toBe(0x0a01_0000n);
    expect(vm.getDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE))).toBe(0x0a01_0000n);
    expect(errnoOf(() => vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), 0x0a02_0000n))).toBe(Errno.EEXIST);
  });
});

describe('ITS KVM_DEV_ARM_VGIC_GRP_CTRL (1.4)', () => {
  it('INIT is a no-op; RESET, SAVE_TABLES, RESTORE_TABLES work; others -ENXIO; GET -ENXIO', () => {
    const { vm, its } = fullVm();
    expect(vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n)).toBe(0n);
    expect(vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n)).toBe(0n); // BASERs invalid: no-op
    expect(vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_RESTORE_TABLES), 0n)).toBe(0n);
    expect(vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_CTRL_RESET), 0n)).toBe(0n);
    expect(vm.stats.saves.count).toBe(1);
    expect(vm.stats.restores.count).toBe(1);
    for (const attr of [KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES, 5, 1000]) {
      expect(errnoOf(() => vm.setDeviceAttr(its, CTRL, b(attr), 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => vm.hasDeviceAttr(its, CTRL, b(attr)))).toBe(Errno.ENXIO);
    }
    for (const attr of [0, 1, 2, 4]) vm.hasDeviceAttr(its, CTRL, b(attr));
    expect(errnoOf(() => vm.getDeviceAttr(its, CTRL, 1n))).toBe(Errno.ENXIO);
  });

  it('CTRL_RESET: BASERs keep everything but Valid, CBASER/CREADR/CWRITER 0, disabled (1.7)', () => {
    const { vm, its } = fullVm();
    const baser0 = (1n << 63n) | (1n << 62n) | b(RAM + 0x10_0000) | 1n;
    vm.setDeviceAttr(its, REGS, 0x100n, baser0);
    vm.setDeviceAttr(its, REGS, 0x80n, (1n << 63n) | b(RAM) | 15n);
    vm.setDeviceAttr(its, REGS, 0x88n, 0x40n);
    const kept = vm.getDeviceAttr(its, REGS, 0x100n);
    vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_CTRL_RESET), 0n);
    expect(vm.getDeviceAttr(its, REGS, 0x100n)).toBe(kept & ~(1n << 63n));
    expect(vm.getDeviceAttr(its, REGS, 0x80n)).toBe(0n);
    expect(vm.getDeviceAttr(its, REGS, 0x88n)).toBe(0n);
    expect(vm.getDeviceAttr(its, REGS, 0x90n)).toBe(0n);
    expect(vm.getDeviceAttr(its, REGS, 0x0n) & 1n).toBe(0n);
  });
});

describe('ITS KVM_DEV_ARM_VGIC_GRP_ITS_REGS (1.5)', () => {
  it('alignment -EINVAL first, then base not set -ENXIO, then the register (unknown -ENXIO)', () => {
    const { vm } = fullVm();
    const its = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    expect(errnoOf(() => vm.getDeviceAttr(its, REGS, 0x84n))).toBe(Errno.EINVAL); // 64-bit region, 4-aligned
    expect(errnoOf(() => vm.getDeviceAttr(its, REGS, 0x2n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.getDeviceAttr(its, REGS, 0xffd2n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.getDeviceAttr(its, REGS, 0x4n))).toBe(Errno.ENXIO); // base not set
    expect(errnoOf(() => vm.setDeviceAttr(its, REGS, 0x80n, 0n))).toBe(Errno.ENXIO);
    vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), 0x0a00_0000n);
    // GITS_IIDR for ABI rev 0 = 0x4B00043B; GITS_TYPER = 0x1EF71 (1.6.2, 1.6.3); PIDR2 0x3B
    expect(vm.getDeviceAttr(its, REGS, 0x4n)).toBe(0x4b00_043bn);
    expect(vm.getDeviceAttr(its, REGS, 0x8n)).toBe(0x1ef71n);
    expect(vm.getDeviceAttr(its, REGS, 0xffe8n)).toBe(0x3bn);
    for (const off of [0x18n, 0x10040n, 0x140n, 0x1_0000_0000n]) expect(errnoOf(() => vm.getDeviceAttr(its, REGS, off))).toBe(Errno.ENXIO);
    // IIDR user write: a revision other than 0 is -EINVAL
    expect(errnoOf(() => vm.setDeviceAttr(its, REGS, 0x4n, 0x1000n))).toBe(Errno.EINVAL);
    // SET returns the value as a GET now reads it (CBASER: PA bits 15:12 forced to 0).
    expect(vm.setDeviceAttr(its, REGS, 0x80n, (1n << 63n) | b(RAM + 0x1000) | 15n) & 0xf000n).toBe(0n);
  });

  it('HAS: aligned offsets in a register region (base not required); misaligned -EINVAL; else -ENXIO', () => {
    const vm = new VirtualGic();
    vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    const its = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false); // before the vgic-v3 INIT
    for (const off of [0x0n, 0x4n, 0x8n, 0x80n, 0x88n, 0x90n, 0x100n, 0x138n, 0xffd0n, 0xfffcn]) vm.hasDeviceAttr(its, REGS, off);
    expect(errnoOf(() => vm.hasDeviceAttr(its, REGS, 0x84n))).toBe(Errno.EINVAL);
    for (const off of [0x18n, 0x40n, 0x10040n]) expect(errnoOf(() => vm.hasDeviceAttr(its, REGS, off))).toBe(Errno.ENXIO);
    // Before the vgic-v3 INIT the ITS has no instance: register access is -ENXIO.
    vm.setDeviceAttr(its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), b(ITS));
    expect(errnoOf(() => vm.getDeviceAttr(its, REGS, 0x4n))).toBe(Errno.ENXIO);
  });
});

describe('guest MMIO routing', () => {
  it('ITS frames to the ITS, RD_base frames to the LPI system, everything else -ENXIO', () => {
    const { vm } = fullVm(4);
    expect(vm.mmioRead(ITS + 0x4, 4)).toBe(0x4b00_043bn);
    expect(vm.mmioRead(ITS + 0x1_fffc, 4)).toBe(0n); // in the frame: RAZ
    expect(errnoOf(() => vm.mmioRead(ITS - 4, 4))).toBe(Errno.ENXIO);
    expect(vm.mmioRead(ITS + 0x2_0000, 4)).toBe(0n); // = REDIST: vCPU 0's GICR_CTLR
    // GICR_TYPER of vCPU 3: Processor_Number (bits 23:8) = 3, Last (bit 4) on the last one
    const typer = vm.mmioRead(REDIST + 3 * 0x2_0000 + 0x8, 8);
    expect((typer >> 8n) & 0xffffn).toBe(3n);
    expect((typer >> 4n) & 1n).toBe(1n);
    expect(errnoOf(() => vm.mmioRead(REDIST + 4 * 0x2_0000 + 0x8, 8))).toBe(Errno.ENXIO); // no vCPU 4
    expect(errnoOf(() => vm.mmioRead(REDIST + 0x1_0000 + 0x100, 4))).toBe(Errno.ENXIO); // SGI frame
    expect(errnoOf(() => vm.mmioRead(REDIST + 0x10, 4))).toBe(Errno.ENXIO); // GICR_STATUSR: the VMM's
    expect(errnoOf(() => vm.mmioRead(DIST, 4))).toBe(Errno.ENXIO);
    expect(errnoOf(() => vm.mmioWrite(DIST, 4, 0n))).toBe(Errno.ENXIO);
    expect(errnoOf(() => vm.mmioRead(ITS, 3))).toBe(Errno.EINVAL);
    vm.mmioWrite(REDIST + 0x2_0000 + 0x70, 8, b(RAM + 0x58f));
    expect(vm.lpis!.propbaser).toBe(b(RAM + 0x58f));
  });

  it('RD frames before the vgic-v3 INIT are -ENXIO', () => {
    const vm = new VirtualGic();
    vm.setVcpus(2);
    const vgic = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    vm.setDeviceAttr(vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_REDIST), b(REDIST));
    expect(errnoOf(() => vm.mmioRead(REDIST + 0x8, 4))).toBe(Errno.ENXIO);
  });
});

describe('KVM_SIGNAL_MSI', () => {
  function enabledIts(): { vm: VirtualGic; memory: ArrayBufferGuestMemory; vgic: number; its: number } {
    const env = fullVm(2);
    const { vm, vgic, its, memory } = env;
    memory.fill(RAM, 0x1_0000, 0xa1); // priority 0xa0, enabled
    for (let v = 0; v < 2; v++) {
      vm.setDeviceAttr(vgic, RDREGS, rdAttr(v, 0x70), b(RAM + 0xf));
      vm.setDeviceAttr(vgic, RDREGS, rdAttr(v, 0x78), b(RAM + 0x1_0000 * (v + 1)));
      vm.setDeviceAttr(vgic, RDREGS, rdAttr(v, 0x0), 1n);
    }
    vm.setDeviceAttr(its, REGS, 0x100n, (1n << 63n) | b(RAM + 0x10_0000));
    vm.setDeviceAttr(its, REGS, 0x108n, (1n << 63n) | b(RAM + 0x11_0000));
    vm.setDeviceAttr(its, REGS, 0x80n, (1n << 63n) | b(RAM + 0x20_0000) | 15n);
    return env;
  }
  function command(vm: VirtualGic, memory: ArrayBufferGuestMemory, slot: number, words: number[]): void {
    words.forEach((w, i) => memory.writeU32(RAM + 0x20_0000 + slot * 32 + i * 4, w >>> 0));
    vm.mmioWrite(ITS + 0x88, 8, b((slot + 1) * 32));
  }

  it('errno order: -ENODEV (no ITS), -EINVAL (no VALID_DEVID, not an ITS frame), -EBUSY (disabled / suspended); 1 and 0', () => {
    const vm0 = new VirtualGic();
    expect(vm0.signalMsi(ITS + 0x10040, 0, 0, 1, 0)).toBe(-Errno.ENODEV);
    const { vm, its, memory } = enabledIts();
    expect(vm.signalMsi(ITS + 0x10040, 0, 0, 0, 1)).toBe(-Errno.EINVAL);
    expect(vm.signalMsi(DIST, 0, 0, 1, 1)).toBe(-Errno.EINVAL);
    expect(vm.signalMsi(ITS + 0x10040, 0, 0, 1, 1)).toBe(-Errno.EBUSY); // ITS disabled
    vm.setDeviceAttr(its, REGS, 0x0n, 1n);
    expect(vm.signalMsi(ITS + 0x10040, 0, 0, 1, 1)).toBe(0); // unmapped device
    command(vm, memory, 0, [0x09, 0, 0, 0, (1 << 16) | 3, 0x8000_0000]); // MAPC ICID 3 -> vCPU 1
    command(vm, memory, 1, [0x08, 1, 1, 0, RAM + 0x30_0000, 0x8000_0000]); // MAPD dev 1, 2 events
    command(vm, memory, 2, [0x0a, 1, 1, 8200, 3, 0]); // MAPTI (1, 1) -> 8200 in ICID 3
    expect(vm.signalMsi(ITS + 0x10040, 0, 1, 1, 1)).toBe(1);
    expect(vm.signalMsi(ITS + 0x100, 0, 1, 1, 1)).toBe(1); // anywhere in the frame
    expect(vm.hasDeliverable(1)).toBe(true);
    expect(vm.ackLpi(1, true)).toEqual({ intid: 8200, priority: 0xa0 });
    vm.suspend();
    expect(vm.signalMsi(ITS + 0x10040, 0, 1, 1, 1)).toBe(-Errno.EBUSY);
    vm.resume();
    const s = vm.stats;
    expect(s.msiDelivered).toBe(2);
    expect(s.msiDropped).toBe(1);
    expect(s.msiDroppedByReason.unmapped_device).toBe(1);
    expect(s.msiDroppedByReason.vm_suspended).toBe(1);
    expect(s.commands.MAPTI).toBe(1);
  });

  it('an ITS above 4 GiB is found from address_hi', () => {
    const { vm } = fullVm();
    const its2 = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    vm.setDeviceAttr(its2, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE), 0x1_2340_0000n);
    // Disabled ITS: -EBUSY means it reached that ITS (an address in no frame would be -EINVAL).
    expect(vm.signalMsi(0x2341_0040, 0x1, 0, 1, 0)).toBe(-Errno.EBUSY);
    expect(vm.signalMsi(0x2341_0040, 0x2, 0, 1, 0)).toBe(-Errno.EINVAL);
  });
});

describe('suspend and resume', () => {
  it('state-changing calls get -EBUSY except the two save controls; reads work; memory is frozen outside the saves', () => {
    const { vm, vgic, its, memory } = fullVm();
    vm.suspend();
    expect(vm.suspended).toBe(true);
    expect(memory.frozen).toBe(true);
    expect(() => memory.writeU32(RAM, 1)).toThrow(GuestMemoryFrozen);
    for (const [dev, group, attr] of [
      [its, REGS, 0x0n], [its, CTRL, b(KVM_DEV_ARM_ITS_RESTORE_TABLES)], [its, CTRL, b(KVM_DEV_ARM_ITS_CTRL_RESET)],
      [its, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT)], [its, ADDR, b(KVM_VGIC_ITS_ADDR_TYPE)], [vgic, CTRL, b(KVM_DEV_ARM_VGIC_CTRL_INIT)],
      [vgic, RDREGS, rdAttr(0, 0x70)], [vgic, ADDR, b(KVM_VGIC_V3_ADDR_TYPE_DIST)],
    ] as const) {
      expect(errnoOf(() => vm.setDeviceAttr(dev, group, attr, 0n)), `${dev} ${group} ${attr}`).toBe(Errno.EBUSY);
    }
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, true))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.setVcpus(2))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.mmioWrite(ITS, 4, 0n))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.ackLpi(0, false))).toBe(Errno.EBUSY);
    expect(vm.ackLpi(0, true)).toEqual({ intid: 1023, priority: 0xff });
    // Reads and HAS work.
    expect(vm.mmioRead(ITS + 4, 4)).toBe(0x4b00_043bn);
    expect(vm.getDeviceAttr(its, REGS, 0x4n)).toBe(0x4b00_043bn);
    vm.hasDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_SAVE_TABLES));
    // The save controls work, and memory is frozen again when they return.
    vm.setDeviceAttr(vgic, CTRL, b(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n);
    vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n);
    expect(memory.frozen).toBe(true);
    vm.resume();
    expect(memory.frozen).toBe(false);
    memory.writeU32(RAM, 1);
    vm.resume(); // no-op
    expect(vm.suspended).toBe(false);
  });

  it('a save while suspended writes the tables (memory thawed inside the control only)', () => {
    const { vm, its, memory } = fullVm();
    vm.setDeviceAttr(its, REGS, 0x108n, (1n << 63n) | b(RAM + 0x11_0000));
    memory.fill(RAM + 0x11_0000, 8, 0xee);
    vm.suspend();
    vm.setDeviceAttr(its, CTRL, b(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n);
    expect(memory.readU64Big(RAM + 0x11_0000)).toBe(0n); // the zero terminator of an empty collection table
    expect(memory.frozen).toBe(true);
  });

  it('SET_MEM_TABLE: before INIT or while suspended; propagated to the LPI system and every ITS', () => {
    const vm = new VirtualGic();
    expect(vm.hasState).toBe(false);
    vm.setMemory(ram());
    expect(vm.hasState).toBe(true);
    const { vm: vm2, its } = fullVm();
    const other = ram();
    expect(errnoOf(() => vm2.setMemory(other))).toBe(Errno.EBUSY);
    vm2.suspend();
    vm2.setMemory(other);
    expect(vm2.memory).toBe(other);
    expect(other.frozen).toBe(true);
    expect(vm2.itsOf(its)!.memory).toBe(other);
    vm2.resume();
    expect(other.frozen).toBe(false);
  });
});
