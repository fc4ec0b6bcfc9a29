/** `vitsctl stats --socket PATH [--json]`: GET_STATS, printed as a table or as the daemon's JSON. */
import { VitsdClient } from '../../../client/client.js';
import type { StatsReply } from '../../../protocol/stats.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';

export interface StatsArgs {
  socket: string;
  timeoutMs: number;
}

function counts(title: string, rec: Record<string, number> | undefined): string[] {
  const entries = Object.entries(rec ?? {}).filter(([, v]) => typeof v === 'number');
  if (entries.length === 0) return [`${title}: none`];
  const width = Math.max(...entries.map(([k]) => k.length));
  return [`${title}:`, ...entries.sort((a, b) => b[1] - a[1]).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)];
}

export function formatStats(s: StatsReply): string {
  const lines: string[] = [];
  lines.push(...counts('requests', s.requests));
  lines.push(...counts('errors', s.errors));
  lines.push(`msi: ${s.msi?.delivered ?? 0} delivered, ${s.msi?.dropped ?? 0} dropped`);
  if (s.msi?.dropped_by_reason) lines.push(...counts('  dropped by reason', s.msi.dropped_by_reason).map((l) => `  ${l}`));
  lines.push(...counts('commands', s.commands));
  lines.push(...counts('command errors', s.command_errors));
  lines.push(`saves: ${s.saves?.count ?? 0} (last ${s.saves?.last_ms ?? 0} ms); restores: ${s.restores?.count ?? 0} (last ${s.restores?.last_ms ?? 0} ms)`);
  const known = new Set(['requests', 'errors', 'msi', 'commands', 'command_errors', 'saves', 'restores']);
  for (const [k, v] of Object.entries(s)) if (!known.has(k)) lines.push(`${k}: ${JSON.stringify(v)}`);
  return lines.join('\n');
}

export async function runStats(args: StatsArgs, out: Output): Promise<ExitCodeValue> {
  const client = await VitsdClient.connect(args.socket, { timeoutMs: args.timeoutMs });
  try {
    const stats = await client.getStats();
    out.result(formatStats(stats), stats);
    return ExitCode.OK;
  } finally {
    client.close();
  }
}
