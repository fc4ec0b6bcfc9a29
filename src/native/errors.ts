/** Turning the native shim's thrown errors into the project's ErrnoError. */
import { Errno, ErrnoError } from '../util/errno.js';

/** The positive errno carried by an error thrown by the shim (or by Node's fs), if any. */
export function errnoOf(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const errno = (e as { errno?: unknown }).errno;
  if (typeof errno === 'number' && Number.isInteger(errno) && errno !== 0) return Math.abs(errno);
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && code in Errno) return Errno[code as keyof typeof Errno];
  return undefined;
}

/** Wraps a thrown native/system error as ErrnoError (EINVAL when it carries no errno). */
export function toErrnoError(e: unknown, context: string): ErrnoError {
  if (e instanceof ErrnoError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ErrnoError(errnoOf(e) ?? Errno.EINVAL, `${context}: ${message}`);
}
