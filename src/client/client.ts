/**
 * A typed, promise-based client of the vitsd wire protocol (../shared/spec/protocol.md),
 * implementing VitsdTarget (src/vmm/types.ts) plus every request of the protocol.
 *
 * - Pipelining: any number of requests may be in flight; each gets a seq, and replies (which
 *   the daemon sends in request order) are matched by seq. A reply that matches nothing in
 *   flight and no timed-out request breaks the protocol: the connection is closed.
 * - Timeouts: per request (default from the options); a timed-out request rejects with
 *   ETIMEDOUT and its late reply, if any, is dropped.
 * - Errors: a negative status rejects with VitsdError (errno, request name, seq, message).
 * - NO_REPLY: SIGNAL_MSI and SIGNAL_MSI_BATCH can be sent without a reply (fire and forget);
 *   barrier() then tells when the daemon has processed them (replies come in order).
 * - close(): rejects whatever is in flight with EPIPE and closes the socket.
 */
import type { VitsdTarget } from '../vmm/types.js';
import type { AckResult } from '../redist/types.js';
import {
  ACK_LPI_PEEK,
  CREATE_DEVICE_TEST,
  FLAG_REPLY,
  HEADER_SIZE,
  KVM_MSI_SIZE,
  MAX_MSI_BATCH,
  PROTOCOL_VERSION,
  REPLY_STATUS_SIZE,
  Request,
  SUPPORTED_FEATURES,
  type RequestName,
} from '../protocol/constants.js';
import { encodeRequestFor } from '../protocol/message.js';
import { msiBatchMessageEntryOffset, writeKvmMsi, writeMsiBatchMessageHead, writeSignalMsiMessage, SIGNAL_MSI_MESSAGE_SIZE, type KvmMsi } from '../protocol/msi.js';
import { REQUESTS, requestName, type RequestTypes } from '../protocol/requests.js';
import type { StatsReply } from '../protocol/stats.js';
import { KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_MSI_VALID_DEVID } from '../attr/types.js';
import { Errno } from '../util/errno.js';
import { ClientErrno, VitsdBatchError, VitsdError } from './errors.js';
import { SocketConnection, type FrameSink } from './socket-connection.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
const SWEEP_INTERVAL_MS = 50;
/** How many timed-out seqs are remembered so that their late replies are recognised. */
const EXPIRED_MEMORY = 4096;

export interface VitsdClientOptions {
  /** Features asked for in HELLO (default: every feature protocol v1 defines). */
  readonly features?: bigint | number;
  /** Default per-request timeout in ms; 0 = none. */
  readonly timeoutMs?: number;
  /** Called once when the connection goes away (not on close()). */
  readonly onClose?: (error: VitsdError) => void;
}

export interface RequestOptions {
  readonly timeoutMs?: number;
  readonly fds?: readonly number[];
}

/** A memory region for SET_MEM_TABLE: guest address, size, its fd and the offset in the file. */
export interface MemTableRegion {
  readonly gpa: number;
  readonly size: number;
  readonly fd: number;
  readonly mmapOffset?: number;
}

/** An MSI as the VMM raises it: doorbell address (ITS base + 0x10040), DeviceID, EventID. */
export interface MsiRequest {
  readonly doorbell: number;
  readonly devid: number;
  readonly eventid: number;
}

export interface BatchResult {
  processed: number;
  delivered: number;
}

export interface ClientStats {
  sent: number;
  replies: number;
  noReply: number;
  timeouts: number;
  lateReplies: number;
  /** Replies whose seq was not the oldest one in flight (the daemon should never do this). */
  outOfOrder: number;
}

interface Reply<T> {
  status: number;
  fields: T;
}

interface Pending {
  readonly seq: number;
  readonly code: number;
  readonly name: RequestName;
  readonly deadline: number;
  resolve(status: number, fields: unknown): void;
  reject(error: VitsdError): void;
}

export class VitsdClient implements VitsdTarget, FrameSink {
  private conn: SocketConnection | null = null;
  private readonly pending = new Map<number, Pending>();
  private readonly expired = new Set<number>();
  private nextSeq = 1;
  private sweepTimer: NodeJS.Timeout | null = null;
  private closeError: VitsdError | null = null;
  private closingByUs = false;
  private readonly timeoutMs: number;
  private readonly onCloseHook: ((error: VitsdError) => void) | null;
  /** Reused buffer of the MSI fast path. */
  private readonly msiScratch = new Uint8Array(SIGNAL_MSI_MESSAGE_SIZE);
  private readonly msiView = new DataView(this.msiScratch.buffer);
  readonly stats: ClientStats = { sent: 0, replies: 0, noReply: 0, timeouts: 0, lateReplies: 0, outOfOrder: 0 };

  /** From HELLO. */
  version = 0;
  resumed = false;
  features = 0n;
  readonly path: string;

  private constructor(path: string, options: VitsdClientOptions) {
    this.path = path;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.onCloseHook = options.onClose ?? null;
  }

  /** Connects to the daemon's socket and runs HELLO. Throws VitsdError (HELLO's errno, or the connect error). */
  static async connect(path: string, options: VitsdClientOptions = {}): Promise<VitsdClient> {
    const client = new VitsdClient(path, options);
    try {
      client.conn = SocketConnection.connect(path, client);
    } catch (e) {
      const errno = (e as { errno?: unknown }).errno;
      const msg = e instanceof Error ? e.message : String(e);
      throw new VitsdError(typeof errno === 'number' ? Math.abs(errno) : Errno.EINVAL, 'CONNECT', -1, `${path}: ${msg}`);
    }
    try {
      const wanted = BigInt(options.features ?? SUPPORTED_FEATURES);
      const r = await client.request('HELLO', { version: PROTOCOL_VERSION, features: wanted });
      client.version = r.fields.version;
      client.resumed = r.fields.resumed !== 0;
      client.features = r.fields.features;
    } catch (e) {
      client.close();
      if (e instanceof VitsdError && e.request === 'HELLO' && e.errno === Errno.EBUSY) {
        throw new VitsdError(Errno.EBUSY, 'HELLO', e.seq, `${path}: another frontend owns this daemon (one at a time; it keeps the VM when that one disconnects)`);
      }
      throw e;
    }
    return client;
  }

  get closed(): boolean {
    return this.conn === null || this.conn.closed;
  }

  /** Whether a feature bit was granted. */
  has(feature: number): boolean {
    return (this.features & BigInt(feature)) !== 0n;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  // ------------------------------------------------------------------ core

  private allocSeq(): number {
    for (let i = 0; i < 1 << 20; i++) {
      const seq = this.nextSeq;
      this.nextSeq = (this.nextSeq + 1) >>> 0;
      if (this.nextSeq === 0) this.nextSeq = 1;
      if (!this.pending.has(seq)) return seq;
    }
    throw new VitsdError(Errno.EAGAIN, 'CLIENT', -1, 'no free sequence number');
  }

  private liveConnection(name: string): SocketConnection {
    if (this.conn === null || this.conn.closed) {
      throw this.closeError ?? new VitsdError(ClientErrno.EPIPE, name, -1, 'the connection is closed');
    }
    return this.conn;
  }

  private track(seq: number, code: number, name: RequestName, timeoutMs: number | undefined): Promise<Reply<unknown>> {
    const ms = timeoutMs ?? this.timeoutMs;
    return new Promise<Reply<unknown>>((resolve, reject) => {
      this.pending.set(seq, {
        seq,
        code,
        name,
        deadline: ms > 0 ? performance.now() + ms : Infinity,
        resolve: (status, fields) => resolve({ status, fields }),
        reject,
      });
      this.conn?.setRef(true);
      if (ms > 0) this.armSweep();
    });
  }

  /**
   * Sends one request and waits for its reply. Resolves with the (non-negative) status and
   * the decoded reply fields; rejects with VitsdError on a negative status.
   */
  async request<N extends RequestName>(name: N, value: RequestTypes[N]['request'], opts: RequestOptions = {}): Promise<Reply<RequestTypes[N]['reply']>> {
    const conn = this.liveConnection(name);
    const seq = this.allocSeq();
    const bytes = encodeRequestFor(name, seq, value);
    const done = this.track(seq, Request[name], name, opts.timeoutMs);
    this.stats.sent++;
    if (!conn.send(bytes, 0, bytes.length, opts.fds ? [...opts.fds] : null)) {
      this.failPending(seq, this.closeError ?? new VitsdError(ClientErrno.EPIPE, name, seq, 'the connection is closed'));
    }
    return (await done) as Reply<RequestTypes[N]['reply']>;
  }

  private failPending(seq: number, error: VitsdError): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    p.reject(error);
    this.afterSettle();
  }

  private afterSettle(): void {
    if (this.pending.size === 0) {
      this.conn?.setRef(false);
      if (this.sweepTimer) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = null;
      }
    }
  }

  private armSweep(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const p of this.pending.values()) {
      if (p.deadline > now) continue;
      this.pending.delete(p.seq);
      this.stats.timeouts++;
      this.rememberExpired(p.seq);
      p.reject(new VitsdError(ClientErrno.ETIMEDOUT, p.name, p.seq, 'no reply in time'));
    }
    this.afterSettle();
  }

  private rememberExpired(seq: number): void {
    if (this.expired.size >= EXPIRED_MEMORY) {
      const oldest = this.expired.values().next().value;
      if (oldest !== undefined) this.expired.delete(oldest);
    }
    this.expired.add(seq);
  }

  /** FrameSink: a reply arrived. Reads the header in place (no header object per reply). */
  onFrame(view: DataView, offset: number): void {
    const code = view.getUint32(offset, true);
    const flags = view.getUint32(offset + 4, true);
    const size = view.getUint32(offset + 8, true);
    const seq = view.getUint32(offset + 12, true);
    if ((flags & FLAG_REPLY) === 0 || (flags & 3) !== PROTOCOL_VERSION) {
      this.protocolViolation(`frame with flags 0x${flags.toString(16)} is not a v1 reply`);
      return;
    }
    const p = this.pending.get(seq);
    if (!p) {
      if (this.expired.delete(seq)) {
        this.stats.lateReplies++;
        return;
      }
      this.protocolViolation(`reply to ${requestName(code)} with seq ${seq}, which is not in flight`);
      return;
    }
    if (seq !== this.oldestInFlight()) this.stats.outOfOrder++;
    this.pending.delete(seq);
    this.stats.replies++;
    if (code !== p.code) {
      p.reject(new VitsdError(Errno.EPROTO, p.name, p.seq, `reply carries request code ${code}`));
      this.afterSettle();
      this.protocolViolation('reply code does not match its request');
      return;
    }
    if (size < REPLY_STATUS_SIZE) {
      p.reject(new VitsdError(Errno.EPROTO, p.name, p.seq, `reply payload of ${size} bytes has no status`));
      this.afterSettle();
      return;
    }
    const payload = offset + HEADER_SIZE;
    const status = view.getInt32(payload, true);
    const fieldsLen = size - REPLY_STATUS_SIZE;
    const spec = REQUESTS[p.name];
    let fields: unknown = null;
    if (fieldsLen > 0) {
      try {
        fields = spec.replyCodec.decode(view, payload + REPLY_STATUS_SIZE, fieldsLen);
      } catch (e) {
        p.reject(new VitsdError(Errno.EPROTO, p.name, p.seq, `undecodable reply fields: ${e instanceof Error ? e.message : String(e)}`));
        this.afterSettle();
        return;
      }
    }
    if (status < 0) {
      if (p.name === 'SIGNAL_MSI_BATCH' && fields !== null) {
        const f = fields as BatchResult;
        p.reject(new VitsdBatchError(-status, p.seq, f.processed, f.delivered));
      } else {
        p.reject(new VitsdError(-status, p.name, p.seq, 'the daemon refused the request'));
      }
    } else if (typeof spec.replyFields === 'number' && fieldsLen !== spec.replyFields) {
      p.reject(new VitsdError(Errno.EPROTO, p.name, p.seq, `reply has ${fieldsLen} field bytes, expected ${spec.replyFields}`));
    } else {
      p.resolve(status, fields);
    }
    this.afterSettle();
  }

  /** seq of the oldest request in flight (Map keeps insertion order). */
  private oldestInFlight(): number {
    for (const seq of this.pending.keys()) return seq;
    return -1;
  }

  /** FrameSink: the connection is gone. */
  onClose(errno: number, reason: string): void {
    const error = new VitsdError(errno, 'CONNECTION', -1, reason);
    this.closeError = error;
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(new VitsdError(errno, p.name, p.seq, `connection lost: ${reason}`));
    this.afterSettle();
    if (!this.closingByUs) this.onCloseHook?.(error);
  }

  private protocolViolation(reason: string): void {
    this.conn?.close(`protocol violation: ${reason}`, Errno.EPROTO);
  }

  /** Closes the connection; requests in flight reject with EPIPE. Idempotent. */
  close(): void {
    this.closingByUs = true;
    this.conn?.close('closed by the client');
  }

  // ------------------------------------------------------------------ requests

  async setMemTable(regions: readonly MemTableRegion[]): Promise<void> {
    await this.request(
      'SET_MEM_TABLE',
      { regions: regions.map((r) => ({ guestPhysAddr: BigInt(r.gpa), memorySize: BigInt(r.size), mmapOffset: BigInt(r.mmapOffset ?? 0) })) },
      { fds: regions.map((r) => r.fd) },
    );
  }

  async setLogBase(fd: number, logSize: number, mmapOffset = 0): Promise<void> {
    await this.request('SET_LOG_BASE', { logSize: BigInt(logSize), mmapOffset: BigInt(mmapOffset) }, { fds: [fd] });
  }

  async createDevice(type: number, test = false): Promise<number> {
    const r = await this.request('CREATE_DEVICE', { type, flags: test ? CREATE_DEVICE_TEST : 0 });
    return r.fields.deviceId;
  }

  async setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint, opts?: RequestOptions): Promise<bigint> {
    const r = await this.request('SET_DEVICE_ATTR', { deviceId, group, attr, value }, opts);
    return r.fields.value;
  }

  async getDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<bigint> {
    const r = await this.request('GET_DEVICE_ATTR', { deviceId, group, attr, value: 0n });
    return r.fields.value;
  }

  async hasDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<void> {
    await this.request('HAS_DEVICE_ATTR', { deviceId, group, attr, value: 0n });
  }

  /** GRP_ADDR get: the address itself. */
  getDeviceAddress(deviceId: number, type: number): Promise<bigint> {
    return this.getDeviceAttr(deviceId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(type));
  }

  async mmio(address: number, length: number, isWrite: boolean, data = 0n): Promise<bigint> {
    const r = await this.request('MMIO', { address: BigInt(address), length, isWrite: isWrite ? 1 : 0, data: BigInt.asUintN(64, data) });
    return r.fields.data;
  }

  mmioRead(gpa: number, size: number): Promise<bigint> {
    return this.mmio(gpa, size, false);
  }

  async mmioWrite(gpa: number, size: number, value: bigint): Promise<void> {
    await this.mmio(gpa, size, true, value);
  }

  /** KVM_SIGNAL_MSI with KVM_MSI_VALID_DEVID: 1 delivered, 0 dropped; negative statuses throw. */
  async signalMsi(doorbell: number, devid: number, eventid: number, opts?: RequestOptions): Promise<number> {
    const conn = this.liveConnection('SIGNAL_MSI');
    const seq = this.allocSeq();
    writeSignalMsiMessage(this.msiView, 0, seq, false, doorbell >>> 0, Math.floor(doorbell / 2 ** 32), eventid, KVM_MSI_VALID_DEVID, devid);
    const done = this.track(seq, Request.SIGNAL_MSI, 'SIGNAL_MSI', opts?.timeoutMs);
    this.stats.sent++;
    if (!conn.send(this.msiScratch, 0, SIGNAL_MSI_MESSAGE_SIZE, null)) {
      this.failPending(seq, this.closeError ?? new VitsdError(ClientErrno.EPIPE, 'SIGNAL_MSI', seq, 'the connection is closed'));
    }
    return (await done).status;
  }

  /** A raw struct kvm_msi (any flags, for tests of the daemon's checks). */
  async signalKvmMsi(msi: KvmMsi): Promise<number> {
    return (await this.request('SIGNAL_MSI', msi)).status;
  }

  /**
   * SIGNAL_MSI with NO_REPLY: no allocation, no promise. Returns false if the connection
   * is closed. Errors (and drops) are only visible in GET_STATS.
   */
  signalMsiNoReply(doorbell: number, devid: number, eventid: number): boolean {
    if (this.conn === null || this.conn.closed) return false;
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq === 0xffffffff ? 1 : this.nextSeq + 1;
    writeSignalMsiMessage(this.msiView, 0, seq, true, doorbell >>> 0, Math.floor(doorbell / 2 ** 32), eventid, KVM_MSI_VALID_DEVID, devid);
    this.stats.noReply++;
    return this.conn.send(this.msiScratch, 0, SIGNAL_MSI_MESSAGE_SIZE, null);
  }

  private encodeBatch(msis: readonly MsiRequest[], seq: number, noReply: boolean): Uint8Array {
    if (msis.length < 1 || msis.length > MAX_MSI_BATCH) throw new VitsdError(Errno.EINVAL, 'SIGNAL_MSI_BATCH', -1, `batch of ${msis.length} MSIs (1..${MAX_MSI_BATCH})`);
    const bytes = new Uint8Array(HEADER_SIZE + 8 + msis.length * KVM_MSI_SIZE);
    const view = new DataView(bytes.buffer);
    writeMsiBatchMessageHead(view, 0, seq, noReply, msis.length);
    for (let i = 0; i < msis.length; i++) {
      const m = msis[i]!;
      writeKvmMsi(view, msiBatchMessageEntryOffset(0, i), m.doorbell >>> 0, Math.floor(m.doorbell / 2 ** 32), m.eventid, KVM_MSI_VALID_DEVID, m.devid);
    }
    return bytes;
  }

  /** SIGNAL_MSI_BATCH: in order; a negative status throws VitsdBatchError (processed/delivered kept). */
  async signalMsiBatch(msis: readonly MsiRequest[], opts?: RequestOptions): Promise<BatchResult> {
    const conn = this.liveConnection('SIGNAL_MSI_BATCH');
    const seq = this.allocSeq();
    const bytes = this.encodeBatch(msis, seq, false);
    const done = this.track(seq, Request.SIGNAL_MSI_BATCH, 'SIGNAL_MSI_BATCH', opts?.timeoutMs);
    this.stats.sent++;
    if (!conn.send(bytes, 0, bytes.length, null)) {
      this.failPending(seq, this.closeError ?? new VitsdError(ClientErrno.EPIPE, 'SIGNAL_MSI_BATCH', seq, 'the connection is closed'));
    }
    const r = await done;
    return r.fields as BatchResult;
  }

  /** SIGNAL_MSI_BATCH with NO_REPLY. */
  signalMsiBatchNoReply(msis: readonly MsiRequest[]): boolean {
    const conn = this.liveConnection('SIGNAL_MSI_BATCH');
    const seq = this.allocSeq();
    const bytes = this.encodeBatch(msis, seq, true);
    this.stats.noReply++;
    return conn.send(bytes, 0, bytes.length, null);
  }

  async setVcpus(count: number): Promise<void> {
    await this.request('SET_VCPUS', { count });
  }

  async setVcpuNotifyFd(vcpu: number, fd: number): Promise<void> {
    await this.request('SET_VCPU_NOTIFY_FD', { vcpu }, { fds: [fd] });
  }

  async ackLpi(vcpu: number, peek = false): Promise<AckResult> {
    const r = await this.request('ACK_LPI', { vcpu, flags: peek ? ACK_LPI_PEEK : 0 });
    return { intid: r.fields.intid, priority: r.fields.priority };
  }

  async suspend(): Promise<void> {
    await this.request('SUSPEND', {});
  }

  async resume(): Promise<void> {
    await this.request('RESUME', {});
  }

  async getStats(): Promise<StatsReply> {
    const r = await this.request('GET_STATS', {});
    return r.fields;
  }

  /** Resolves once every request sent before it has been processed (a GET_STATS round trip). */
  async barrier(): Promise<void> {
    await this.getStats();
  }
}
