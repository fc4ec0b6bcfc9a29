/** Parsing of numeric arguments (decimal or 0x-hex, u64). */
import { UsageError } from './exit-codes.js';

export function parseU64Arg(name: string, text: unknown): bigint {
  const s = String(text).trim().replace(/_/g, '');
  if (!/^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(s)) throw new UsageError(`--${name}: "${String(text)}" is not a number (decimal or 0x-hex)`);
  const v = BigInt(s);
  if (v > 0xffffffffffffffffn) throw new UsageError(`--${name}: ${s} does not fit in 64 bits`);
  return v;
}

/** A guest physical address or size (exact as a JS number). */
export function parseAddressArg(name: string, text: unknown): number {
  const v = parseU64Arg(name, text);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UsageError(`--${name}: ${text} is too large`);
  return Number(v);
}
