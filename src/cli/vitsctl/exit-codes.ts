/**
 * vitsctl's exit codes (documented in `vitsctl --help`).
 */
import { isVitsdError } from '../../client/errors.js';
import { isErrnoError } from '../../util/errno.js';

export const ExitCode = {
  /** Everything worked and every check passed. */
  OK: 0,
  /** A check failed: a mismatch after migration, an inconsistency in the tables, a failed verification. */
  FAILURE: 1,
  /** Bad command line. */
  USAGE: 2,
  /** The daemon refused a request or could not be reached (connection, HELLO, a negative status). */
  DAEMON: 3,
  /** A file could not be read, written or mapped (RAM image, state file). */
  IO: 4,
  /** An unexpected internal error (a bug). */
  INTERNAL: 5,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0  success (and every check passed)',
  '  1  a check failed: mismatch after migration, table inconsistency, verification failure',
  '  2  usage error (bad or missing arguments)',
  '  3  daemon error: cannot connect, HELLO refused, or a request failed with an errno',
  '  4  file error: a RAM image or state file cannot be read, written or mapped',
  '  5  internal error',
].join('\n');

/** Thrown by commands for a usage problem found after parsing (e.g. inconsistent options). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Thrown for a file problem with its path. */
export class FileError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'FileError';
  }
}

/** Exit code for an error that escaped a command. */
export function exitCodeFor(e: unknown): ExitCodeValue {
  if (e instanceof UsageError) return ExitCode.USAGE;
  if (e instanceof FileError) return ExitCode.IO;
  if (isVitsdError(e)) return ExitCode.DAEMON;
  if (isErrnoError(e)) return ExitCode.IO;
  return ExitCode.INTERNAL;
}
