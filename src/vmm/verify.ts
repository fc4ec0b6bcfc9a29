/**
 * End-to-end checks a VMM can run against a live vitsd: every mapped (DeviceID, EventID)
 * raises the LPI the guest mapped, on the vCPU the guest chose, exactly once.
 */
import type { ExpectedTranslation } from './guest-driver.js';
import { drainAllVcpus, type AckedLpi } from './guest-cpus.js';
import type { VitsdTarget } from './types.js';

export interface TranslationCheckResult {
  checked: number;
  delivered: number;
  problems: string[];
  /** LPIs that were already pending before the check started (drained first). */
  leftovers: AckedLpi[];
}

/**
 * For every enabled translation: SIGNAL_MSI must return 1, then acknowledging on every vCPU
 * must return each INTID exactly once, on its vCPU, and nothing else. The vCPUs are drained
 * first (what was pending before is returned as `leftovers`, not judged).
 */
export async function checkTranslations(target: VitsdTarget, translations: readonly ExpectedTranslation[], nrVcpus: number): Promise<TranslationCheckResult> {
  const leftovers = await drainAllVcpus(target, nrVcpus);
  const problems: string[] = [];
  const enabled = translations.filter((t) => t.enabled);
  const statuses = await Promise.all(enabled.map((t) => target.signalMsi(t.doorbell, t.devid, t.eventid).catch((e: unknown) => (e instanceof Error ? e.message : String(e)))));
  let delivered = 0;
  statuses.forEach((s, i) => {
    const t = enabled[i]!;
    if (s === 1) delivered++;
    else problems.push(`MSI dev 0x${t.devid.toString(16)} event ${t.eventid}: SIGNAL_MSI returned ${String(s)}, expected 1`);
  });
  const acked = await drainAllVcpus(target, nrVcpus);
  const byIntid = new Map<number, number[]>();
  for (const a of acked) byIntid.set(a.intid, [...(byIntid.get(a.intid) ?? []), a.vcpu]);
  for (const t of enabled) {
    const got = byIntid.get(t.intid) ?? [];
    byIntid.delete(t.intid);
    if (got.length === 0) problems.push(`dev 0x${t.devid.toString(16)} event ${t.eventid}: INTID ${t.intid} was never acknowledged (expected on vCPU ${t.vcpu})`);
    else if (got.length > 1) problems.push(`dev 0x${t.devid.toString(16)} event ${t.eventid}: INTID ${t.intid} acknowledged ${got.length} times (vCPUs ${got.join(', ')})`);
    else if (got[0] !== t.vcpu) problems.push(`dev 0x${t.devid.toString(16)} event ${t.eventid}: INTID ${t.intid} arrived on vCPU ${got[0]}, expected vCPU ${t.vcpu}`);
  }
  for (const [intid, vcpus] of byIntid) problems.push(`INTID ${intid} acknowledged on vCPU ${vcpus.join(', ')} but no MSI was sent for it`);
  return { checked: enabled.length, delivered, problems, leftovers };
}

/** Compares acknowledged LPIs with an expected multiset {intid -> vcpu}, each exactly once. */
export function compareAcked(acked: readonly AckedLpi[], expected: ReadonlyMap<number, number>): string[] {
  const problems: string[] = [];
  const seen = new Map<number, number>();
  for (const a of acked) {
    seen.set(a.intid, (seen.get(a.intid) ?? 0) + 1);
    const want = expected.get(a.intid);
    if (want === undefined) problems.push(`INTID ${a.intid} acknowledged on vCPU ${a.vcpu} but was not expected`);
    else if (want !== a.vcpu) problems.push(`INTID ${a.intid} acknowledged on vCPU ${a.vcpu}, expected vCPU ${want}`);
  }
  for (const [intid, n] of seen) if (n > 1) problems.push(`INTID ${intid} acknowledged ${n} times`);
  for (const [intid, vcpu] of expected) if (!seen.has(intid)) problems.push(`INTID ${intid} (vCPU ${vcpu}) was never acknowledged`);
  return problems;
}
