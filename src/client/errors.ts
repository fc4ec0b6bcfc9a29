/**
 * Errors of the client library. Everything a request can fail with is a VitsdError: the
 * daemon's negative status (its errno), or a local condition given the errno Linux would
 * use (ETIMEDOUT for a reply that did not come in time, EPIPE for a closed connection,
 * EPROTO for a reply that breaks the protocol).
 */
import { ErrnoError, errnoName } from '../util/errno.js';

/** errno values the client uses that src/util/errno.ts does not list. */
export const ClientErrno = {
  EPIPE: 32,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
} as const;

const LOCAL_NAMES = new Map<number, string>(Object.entries(ClientErrno).map(([k, v]) => [v, k]));

/** errnoName() plus the client's own codes. */
export function clientErrnoName(errno: number): string {
  return LOCAL_NAMES.get(Math.abs(errno)) ?? errnoName(errno);
}

export class VitsdError extends ErrnoError {
  /** Request name (e.g. "SET_DEVICE_ATTR"), or "CONNECT" for connection set-up. */
  readonly request: string;
  /** seq of the request (-1 when it never got one). */
  readonly seq: number;
  /** What the daemon or the client said, without the errno and request prefix. */
  readonly detail: string;

  constructor(errno: number, request: string, seq: number, detail: string) {
    super(errno, detail);
    this.name = 'VitsdError';
    this.request = request;
    this.seq = seq;
    this.detail = detail;
    this.message = `${clientErrnoName(errno)}: ${request}${seq >= 0 ? ` (seq ${seq})` : ''}: ${detail}`;
  }

  /** Name of the errno, e.g. "EBUSY". */
  get errnoName(): string {
    return clientErrnoName(this.errno);
  }
}

/** SIGNAL_MSI_BATCH stopped at a negative status: how far it got is kept. */
export class VitsdBatchError extends VitsdError {
  readonly processed: number;
  readonly delivered: number;
  constructor(errno: number, seq: number, processed: number, delivered: number) {
    super(errno, 'SIGNAL_MSI_BATCH', seq, `batch stopped after ${processed} MSI(s) (${delivered} delivered)`);
    this.name = 'VitsdBatchError';
    this.processed = processed;
    this.delivered = delivered;
  }
}

export function isVitsdError(e: unknown): e is VitsdError {
  return e instanceof VitsdError;
}
