/**
 * End-of-run guest memory dumps (--tables DIR): `memdump-index.txt` lines of the form
 * `name base=0x... size=0x... file=NAME.bin`, each file plain or gzip'd (NAME.bin.gz).
 *
 * Only guest-owned content is used by the replay: the LPI configuration table (the guest's
 * final priority/enable bytes), the level-1 device table of an indirect GITS_BASER0 (the guest
 * writes its entries) and the command queue. ITT, device level-2 and collection dumps are in
 * the recording ITS's private format (QEMU's 12-byte ITEs) and are never loaded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export interface MemoryDump {
  readonly name: string;
  readonly gpa: number;
  readonly bytes: Uint8Array;
}

function readMaybeGz(path: string): Uint8Array | undefined {
  for (const p of [path, `${path}.gz`]) {
    if (!existsSync(p)) continue;
    const raw = readFileSync(p);
    return raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
  }
  return undefined;
}

const INDEX_LINE = /^(\S+)\s+base=(0x[0-9a-fA-F]+)\s+size=(0x[0-9a-fA-F]+)\s+file=(\S+)/;

/** Reads every dump listed in DIR/memdump-index.txt (missing files are skipped). */
export function readTableDumps(dir: string): MemoryDump[] {
  const index = readMaybeGz(join(dir, 'memdump-index.txt'));
  if (!index) throw new Error(`${dir}: no memdump-index.txt`);
  const out: MemoryDump[] = [];
  for (const line of Buffer.from(index).toString('utf8').split('\n')) {
    const m = INDEX_LINE.exec(line.trim());
    if (!m) continue;
    const bytes = readMaybeGz(join(dir, m[4]!));
    if (!bytes) continue;
    const size = Number.parseInt(m[3]!.slice(2), 16);
    out.push({ name: m[1]!, gpa: Number.parseInt(m[2]!.slice(2), 16), bytes: bytes.subarray(0, Math.min(size, bytes.length)) });
  }
  return out;
}

/** The dump that starts at `gpa`, if any. */
export function dumpAt(dumps: readonly MemoryDump[], gpa: number): MemoryDump | undefined {
  return dumps.find((d) => d.gpa === gpa);
}
