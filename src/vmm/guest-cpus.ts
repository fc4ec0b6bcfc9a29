/**
 * The guest vCPUs' side of LPI delivery: acknowledge (ICC_IAR1_EL1, here ACK_LPI) until
 * nothing is left, recording what each vCPU took. Bounded: a vCPU cannot take more LPIs
 * in one drain than exist (2^16).
 */
import { SPURIOUS_INTID } from '../redist/types.js';
import type { VitsdTarget } from './types.js';

export interface AckedLpi {
  vcpu: number;
  intid: number;
  priority: number;
}

const MAX_ACKS_PER_DRAIN = 1 << 16;

/** Acknowledges every deliverable LPI of one vCPU. */
export async function drainVcpu(target: VitsdTarget, vcpu: number, out: AckedLpi[] = []): Promise<AckedLpi[]> {
  for (let i = 0; i < MAX_ACKS_PER_DRAIN; i++) {
    const r = await target.ackLpi(vcpu);
    if (r.intid === SPURIOUS_INTID) break;
    out.push({ vcpu, intid: r.intid, priority: r.priority });
  }
  return out;
}

/** Acknowledges every deliverable LPI of every vCPU. */
export async function drainAllVcpus(target: VitsdTarget, nrVcpus: number): Promise<AckedLpi[]> {
  const out: AckedLpi[] = [];
  for (let v = 0; v < nrVcpus; v++) await drainVcpu(target, v, out);
  return out;
}

/** Number of acknowledged LPIs per vCPU. */
export function countByVcpu(acked: readonly AckedLpi[], nrVcpus: number): number[] {
  const n = new Array<number>(nrVcpus).fill(0);
  for (const a of acked) n[a.vcpu] = (n[a.vcpu] ?? 0) + 1;
  return n;
}
