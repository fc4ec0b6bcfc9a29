/**
 * What a request handler sees: the request (a view of the receive buffer, no copy), its
 * fds, where its reply fields go, and the connection and daemon state. One context per
 * connection, reused for every request (no allocation per request).
 *
 * A handler returns the reply status: >= 0 for success, or a negative errno after filling
 * the fields itself (SIGNAL_MSI_BATCH fills processed/delivered on failure). Throwing an
 * ErrnoError replies with that errno and zero-filled fields.
 */
import { ErrnoError, Errno } from '../util/errno.js';
import type { DaemonState } from './state.js';

/** The per-connection protocol facts a handler may read or change. */
export interface SessionView {
  readonly id: number;
  /** HELLO completed on this connection. */
  helloDone: boolean;
  /** Features granted by HELLO. */
  grantedFeatures: number;
  /** Close the connection once this request's reply is sent. */
  closeAfterReply: boolean;
}

export interface RequestContext {
  readonly state: DaemonState;
  readonly session: SessionView;
  code: number;
  flags: number;
  seq: number;
  /** The receive buffer and where the payload starts in it. */
  view: DataView;
  payload: number;
  size: number;
  /** fds that came with the request; takeFd() hands one over to the handler. */
  fds: number[];
  /** Where the reply fields go (a scratch area when no reply is sent). */
  out: DataView;
  fields: number;
  /** GET_STATS only: the variable-size reply fields. */
  variableFields: Uint8Array | null;
}

/** Takes ownership of fd number i of the request (it will not be closed by the dispatcher). */
export function takeFd(ctx: RequestContext, i: number): number {
  const fd = ctx.fds[i];
  if (fd === undefined || fd < 0) throw new ErrnoError(Errno.EINVAL, `request carries no fd #${i}`);
  ctx.fds[i] = -1;
  return fd;
}

/** A request error: -EINVAL with zero-filled fields. */
export function invalid(message: string): ErrnoError {
  return new ErrnoError(Errno.EINVAL, message);
}

export type Handler = (ctx: RequestContext) => number;
