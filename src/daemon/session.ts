/**
 * The protocol engine of one connection, without I/O: framing, the HELLO and ownership
 * rules, validation through the request table, dispatch through the handler table, and
 * replies written into the outbound buffer in request order. The socket layer
 * (connection.ts) feeds it bytes and sends what it queues; unit tests feed it directly.
 */
import {
  FLAG_NO_REPLY,
  HEADER_SIZE,
  REPLY_STATUS_SIZE,
  Request,
} from '../protocol/constants.js';
import { FramingError, framingErrorText, type FramingErrorCode } from '../protocol/header.js';
import { writeReplyHead } from '../protocol/message.js';
import { expectedFdCount, payloadSizeOk, requestName, requestRule, type RequestRule } from '../protocol/requests.js';
import { Errno, errnoName, isErrnoError } from '../util/errno.js';
import type { RequestContext, SessionView } from './context.js';
import { FrameParser, FrameStatus, type Frame } from './framing.js';
import { HANDLERS } from './handlers/index.js';
import { OutboundBuffer } from './outbound.js';
import type { DaemonState, Owner } from './state.js';

/** Above this many unsent reply bytes the session stops taking requests (back-pressure). */
export const OUTBOUND_HIGH_WATER = 4 * 1024 * 1024;
const REPLY_HEAD = HEADER_SIZE + REPLY_STATUS_SIZE;
/** Largest fixed reply field area (HELLO: 16 bytes). */
const SCRATCH_FIELDS = 64;

export class Session implements SessionView, Owner {
  readonly id: number;
  helloDone = false;
  grantedFeatures = 0;
  closeAfterReply = false;
  /** No more requests are taken: the queued replies are sent, then the connection closes. */
  closing = false;
  readonly parser = new FrameParser();
  readonly out = new OutboundBuffer();
  private readonly state: DaemonState;
  private readonly ctx: RequestContext;
  private readonly scratch = new DataView(new ArrayBuffer(SCRATCH_FIELDS));
  private readonly trace: boolean;

  constructor(state: DaemonState, id: number) {
    this.state = state;
    this.id = id;
    this.trace = state.log.isLevelEnabled('trace');
    this.ctx = {
      state, session: this, code: 0, flags: 0, seq: 0, view: this.parser.view, payload: 0, size: 0, fds: [],
      out: this.scratch, fields: 0, variableFields: null,
    };
  }

  /** Whether the connection should read more requests now. */
  get acceptingInput(): boolean {
    return !this.closing && this.out.pending < OUTBOUND_HIGH_WATER;
  }

  /**
   * Records n bytes received at parser.writeOffset with their fds, then handles every
   * complete request. fdsLost: the fds were truncated on the way (MSG_CTRUNC).
   */
  received(n: number, fds: readonly number[] | null, fdsLost = false): void {
    const { counters } = this.state;
    counters.bytesReceived += n;
    if (fds !== null && fds.length > 0) counters.fdsReceived += fds.length;
    if (fdsLost) this.state.log.warn({ conn: this.id }, 'fds lost in transit (control data truncated)');
    if (this.closing) {
      // After a framing error the stream means nothing any more.
      if (fds !== null) this.dropFds(fds, 'received after the connection failed');
      return;
    }
    const refused = this.parser.commit(n, fds, fdsLost);
    if (refused !== null) this.dropFds(refused, 'too many fds pending for one message');
    this.processBuffered();
  }

  /** Copies bytes into the receive buffer and handles them (tests, and any byte source). */
  feed(bytes: Uint8Array, fds: readonly number[] | null = null): void {
    this.parser.reserve(bytes.length);
    this.parser.buf.set(bytes, this.parser.writeOffset);
    this.received(bytes.length, fds);
  }

  /** Handles buffered requests until none is complete, the session closes, or replies back up. */
  processBuffered(): void {
    const parser = this.parser;
    while (this.acceptingInput) {
      const status = parser.next();
      if (status === FrameStatus.NEED_MORE) return;
      if (status === FrameStatus.FRAMING_ERROR) {
        this.framingError(parser.frame, parser.frame.framingError);
        return;
      }
      this.dispatch(parser.frame);
    }
  }

  private dispatch(f: Frame): void {
    if (!this.helloDone && f.request !== Request.HELLO) {
      this.framingError(f, FramingError.HELLO_NOT_FIRST);
      return;
    }
    const state = this.state;
    state.counters.countRequest(f.request);
    if (this.trace) state.log.trace({ conn: this.id, request: requestName(f.request), seq: f.seq, size: f.size, fds: f.fds.length }, 'request');
    const rule = requestRule(f.request);
    if (rule === undefined) {
      this.replyStatusOnly(f.request, f.seq, -Errno.EOPNOTSUPP);
      state.counters.countError(Errno.EOPNOTSUPP);
      state.counters.requestErrors++;
      state.log.debug({ conn: this.id, request: f.request, seq: f.seq }, 'unknown request code');
      this.closeUnusedFds(f, 'unknown request');
      return;
    }
    const noReply = rule.noReplyAllowed && (f.flags & FLAG_NO_REPLY) !== 0;
    const fieldsSize = rule.replyFields === 'variable' ? 0 : rule.replyFields;
    const ctx = this.ctx;
    let replyAt = -1;
    if (noReply) {
      ctx.out = this.scratch;
      ctx.fields = 0;
    } else {
      replyAt = this.out.reserve(REPLY_HEAD + fieldsSize);
      ctx.out = this.out.view;
      ctx.fields = replyAt + REPLY_HEAD;
    }
    ctx.code = f.request;
    ctx.flags = f.flags;
    ctx.seq = f.seq;
    ctx.view = this.parser.view;
    ctx.payload = f.payloadOffset;
    ctx.size = f.size;
    ctx.fds = f.fds;
    ctx.variableFields = null;

    const status = this.validateAndHandle(rule, f, ctx, fieldsSize);
    if (status < 0) {
      state.counters.countError(status);
      state.counters.requestErrors++;
    }
    if (!noReply) {
      let extra = 0;
      const variable = ctx.variableFields as Uint8Array | null;
      if (variable !== null && status >= 0) {
        const bytes = variable;
        const at = this.out.reserve(bytes.length);
        this.out.buf.set(bytes, at);
        replyAt = at - REPLY_HEAD - fieldsSize;
        extra = bytes.length;
      }
      writeReplyHead(this.out.view, replyAt, f.request, f.seq, fieldsSize + extra, status);
    }
    ctx.variableFields = null;
    this.closeUnusedFds(f, rule.name);
    if (this.closeAfterReply) this.closing = true;
  }

  /** Request-level checks of protocol.md, then the handler. Returns the reply status. */
  private validateAndHandle(rule: RequestRule, f: Frame, ctx: RequestContext, fieldsSize: number): number {
    if (rule.feature !== 0 && (this.grantedFeatures & rule.feature) === 0) {
      this.state.log.debug({ conn: this.id, request: rule.name }, 'request needs a feature not granted');
      return -Errno.EOPNOTSUPP;
    }
    if (!payloadSizeOk(rule.payload, ctx.view, f.payloadOffset, f.size)) {
      this.state.log.debug({ conn: this.id, request: rule.name, size: f.size }, 'request payload size or count out of range');
      return -Errno.EINVAL;
    }
    const fdsWanted = expectedFdCount(rule, ctx.view, f.payloadOffset);
    if (f.fdsLost || f.fds.length !== fdsWanted) {
      this.state.log.debug({ conn: this.id, request: rule.name, fds: f.fds.length, wanted: fdsWanted, lost: f.fdsLost }, 'wrong number of fds');
      return -Errno.EINVAL;
    }
    const handler = HANDLERS[rule.code]!;
    try {
      return handler(ctx);
    } catch (e) {
      // Zero the fields a handler may have half-written (protocol.md: zero-filled on failure).
      if (fieldsSize > 0) {
        for (let i = 0; i < fieldsSize; i += 4) ctx.out.setUint32(ctx.fields + i, 0, true);
      }
      ctx.variableFields = null;
      if (isErrnoError(e)) {
        this.state.log.debug({ conn: this.id, request: rule.name, seq: f.seq, errno: errnoName(e.errno), err: e.message }, 'request failed');
        return -e.errno;
      }
      // A bug, not the frontend's fault: never let it take the daemon down.
      this.state.counters.internalErrors++;
      this.state.log.error({ conn: this.id, request: rule.name, seq: f.seq, err: e }, 'internal error in a request handler');
      return -Errno.EINVAL;
    }
  }

  /** A reply that is only the 8-byte status. */
  private replyStatusOnly(code: number, seq: number, status: number): void {
    const at = this.out.reserve(REPLY_HEAD);
    writeReplyHead(this.out.view, at, code, seq, 0, status);
  }

  private framingError(f: Frame, error: FramingErrorCode): void {
    const state = this.state;
    state.counters.framingErrors++;
    this.replyStatusOnly(f.request, f.seq, -Errno.EPROTO);
    state.counters.countError(Errno.EPROTO);
    state.log.warn(
      { conn: this.id, reason: framingErrorText(error), request: f.request, flags: `0x${(f.flags >>> 0).toString(16)}`, size: f.size, seq: f.seq },
      'framing error: closing the connection',
    );
    this.closeUnusedFds(f, 'framing error');
    this.closing = true;
  }

  private closeUnusedFds(f: Frame, why: string): void {
    const fds = f.fds;
    if (fds.length === 0) return;
    let dropped = 0;
    for (let i = 0; i < fds.length; i++) {
      const fd = fds[i]!;
      if (fd >= 0) {
        this.state.host.closeFd(fd);
        fds[i] = -1;
        dropped++;
      }
    }
    if (dropped > 0) {
      this.state.counters.fdsDropped += dropped;
      this.state.log.warn({ conn: this.id, request: why, seq: f.seq, fds: dropped }, 'closed fds the request does not use');
    }
  }

  private dropFds(fds: readonly number[], why: string): void {
    for (const fd of fds) if (fd >= 0) this.state.host.closeFd(fd);
    if (fds.length > 0) {
      this.state.counters.fdsDropped += fds.length;
      this.state.log.warn({ conn: this.id, fds: fds.length, why }, 'closed received fds');
    }
  }

  /** The connection is gone: release ownership (the VM state stays) and close stray fds. */
  closed(): void {
    this.closing = true;
    this.dropFds(this.parser.drainFds(), 'connection closed before their message completed');
    if (this.state.owner !== null && this.state.owner.id === this.id) {
      this.state.owner = null;
      this.state.log.info({ conn: this.id, state_kept: this.state.vm.hasState }, 'frontend detached');
    }
  }
}
