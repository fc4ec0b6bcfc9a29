/**
 * Guest-physical address checks of KVM_DEV_ARM_VGIC_GRP_ADDR (KVM vgic_check_iorange):
 * already set -> -EEXIST; base or size not aligned, or wrapping -> -EINVAL; beyond the VM's
 * IPA space -> -E2BIG.
 */
import { Errno, ErrnoError } from '../util/errno.js';

/** KVM's VGIC_ADDR_UNDEF: what a GET returns for an address never set. */
export const VGIC_ADDR_UNDEF = 0xffff_ffff_ffff_ffffn;
/**
 * The VM's IPA size. vitsd is not told the VMM's choice; it uses the largest the GIC can
 * address (52-bit PA), so only addresses no guest can use are -E2BIG.
 */
export const IPA_LIMIT = 2n ** 52n;
export const SZ_64K = 0x10000n;

export function checkIorange(current: bigint | null, addr: bigint, alignment: bigint, size: bigint, what: string): void {
  if (current !== null) throw new ErrnoError(Errno.EEXIST, `${what} address is already set`);
  if (addr % alignment !== 0n || size % alignment !== 0n) {
    throw new ErrnoError(Errno.EINVAL, `${what} address 0x${addr.toString(16)} is not ${alignment / 1024n} KiB aligned`);
  }
  if (addr + size > 0xffff_ffff_ffff_ffffn) throw new ErrnoError(Errno.EINVAL, `${what} region wraps around`);
  if (addr + size > IPA_LIMIT) {
    throw new ErrnoError(Errno.E2BIG, `${what} region 0x${addr.toString(16)}+0x${size.toString(16)} is beyond the 52-bit IPA space`);
  }
}

/** [a, a + alen) and [b, b + blen) overlap. */
export function overlaps(a: bigint, alen: bigint, b: bigint, blen: bigint): boolean {
  return a < b + blen && b < a + alen;
}
