/**
 * Linux errno values used on the wire and in typed errors (protocol.md, "Errno values").
 * Replies carry the negative of these.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

export type ErrnoName = keyof typeof Errno;

const NAMES = new Map<number, ErrnoName>(
  (Object.entries(Errno) as [ErrnoName, number][]).map(([k, v]) => [v, k]),
);

/** Name of a (positive or negative) errno, e.g. 22 or -22 -> "EINVAL". */
export function errnoName(errno: number): string {
  return NAMES.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/**
 * An error that carries a Linux errno. Everything that can fail in a way a VMM sees
 * throws (or returns) one of these; the daemon turns it into a negative status.
 */
export class ErrnoError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(`${errnoName(errno)}: ${message}`);
    this.name = 'ErrnoError';
    this.errno = Math.abs(errno);
  }
}

export function isErrnoError(e: unknown): e is ErrnoError {
  return e instanceof ErrnoError;
}
