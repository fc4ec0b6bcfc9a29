/**
 * The guest physical address map of the reference VM (QEMU `virt`-like): distributor,
 * redistributor frames, ITS frames and one RAM region. The VMM uses it to create and place
 * the devices; the reference guest uses it as its device tree.
 */
import { ITS_FRAME_SIZE } from '../its/types.js';
import { GICR_STRIDE } from '../attr/types.js';
import { GITS_TRANSLATER } from '../its/types.js';
import { Errno, ErrnoError } from '../util/errno.js';

export interface VmLayout {
  /** GICD base (emulated by the VMM; recorded by vitsd). */
  readonly distBase: number;
  /** First redistributor's RD_base; vCPU i at redistBase + i * GICR_STRIDE. */
  readonly redistBase: number;
  /** One 128 KiB frame per ITS. */
  readonly itsBases: readonly number[];
  readonly ramBase: number;
  readonly ramSize: number;
  readonly nrVcpus: number;
}

/** QEMU virt: GICD 0x08000000, first ITS 0x08080000, GICR 0x080A0000; RAM at 1 GiB. */
export const VIRT_DIST_BASE = 0x0800_0000;
export const VIRT_ITS_BASE = 0x0808_0000;
export const VIRT_REDIST_BASE = 0x080a_0000;
/** Further ITSes go above the redistributor space (123 x 128 KiB in virt). */
export const EXTRA_ITS_BASE = 0x0a00_0000;
export const VIRT_RAM_BASE = 0x4000_0000;

export interface LayoutOptions {
  nrVcpus: number;
  nrIts?: number;
  ramSize: number;
  ramBase?: number;
}

export function virtLayout(opts: LayoutOptions): VmLayout {
  const nrIts = opts.nrIts ?? 1;
  if (opts.nrVcpus < 1 || opts.nrVcpus > 123) throw new ErrnoError(Errno.EINVAL, `${opts.nrVcpus} vCPUs do not fit the virt redistributor space`);
  if (nrIts < 1 || nrIts > 16) throw new ErrnoError(Errno.EINVAL, `${nrIts} ITSes (1..16)`);
  const itsBases = [VIRT_ITS_BASE];
  for (let i = 1; i < nrIts; i++) itsBases.push(EXTRA_ITS_BASE + (i - 1) * ITS_FRAME_SIZE);
  return {
    distBase: VIRT_DIST_BASE,
    redistBase: VIRT_REDIST_BASE,
    itsBases,
    ramBase: opts.ramBase ?? VIRT_RAM_BASE,
    ramSize: opts.ramSize,
    nrVcpus: opts.nrVcpus,
  };
}

export const rdBase = (layout: VmLayout, vcpu: number): number => layout.redistBase + vcpu * GICR_STRIDE;
export const doorbell = (itsBase: number): number => itsBase + GITS_TRANSLATER;
