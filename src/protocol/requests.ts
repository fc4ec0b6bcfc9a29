/**
 * One entry per request code: its name, payload size rule, fd count, required feature,
 * reply fields and codecs. The daemon validates and dispatches through this table; the
 * client encodes and decodes through it.
 */
import {
  Feature,
  KVM_MSI_SIZE,
  MAX_MEM_REGIONS,
  MAX_MSI_BATCH,
  MEM_REGION_SIZE,
  MEM_TABLE_HEAD_SIZE,
  MSI_BATCH_HEAD_SIZE,
  REQUEST_CODE_LIMIT,
  Request,
  type RequestName,
} from './constants.js';
import { EmptyCodec, type Empty, type PayloadCodec } from './codec.js';
import {
  AttrValueReplyCodec,
  type AttrValueReply,
  type CreateDeviceReply,
  type CreateDeviceRequest,
  type DeviceAttrRequest,
  type MmioReply,
  type MmioRequest,
  CreateDeviceReplyCodec,
  CreateDeviceRequestCodec,
  DeviceAttrRequestCodec,
  MmioReplyCodec,
  MmioRequestCodec,
} from './device.js';
import { HelloReplyCodec, HelloRequestCodec, type HelloReply, type HelloRequest } from './hello.js';
import { SetLogBaseRequestCodec, SetMemTableRequestCodec, type SetLogBaseRequest, type SetMemTableRequest } from './memory.js';
import { KvmMsiCodec, MsiBatchReplyCodec, MsiBatchRequestCodec, type KvmMsi, type MsiBatchReply, type MsiBatchRequest } from './msi.js';
import { StatsReplyCodec, type StatsReply } from './stats.js';
import {
  AckLpiReplyCodec,
  AckLpiRequestCodec,
  SetVcpuNotifyFdRequestCodec,
  SetVcpusRequestCodec,
  type AckLpiReply,
  type AckLpiRequest,
  type SetVcpuNotifyFdRequest,
  type SetVcpusRequest,
} from './vcpu.js';

/** How long a request payload must be. */
export type PayloadRule =
  /** Exactly `size` bytes. */
  | { readonly kind: 'exact'; readonly size: number }
  /**
   * A u32 count at payload offset 0 in [min, max], and exactly
   * headSize + count * elementSize bytes.
   */
  | { readonly kind: 'counted'; readonly headSize: number; readonly elementSize: number; readonly min: number; readonly max: number }
  /** Anything up to `max` bytes (for extensions; no v1 request uses it). */
  | { readonly kind: 'variable'; readonly max: number };

/** How many fds a request carries. */
export type FdRule =
  | { readonly kind: 'exact'; readonly count: number }
  /** One per counted element, in element order (SET_MEM_TABLE). */
  | { readonly kind: 'per-element' };

/** The validation facts of one request (what the daemon needs to check a message). */
export interface RequestRule {
  readonly code: number;
  readonly name: RequestName;
  readonly payload: PayloadRule;
  readonly fds: FdRule;
  /** Feature bit that must have been granted (0 = none). */
  readonly feature: number;
  /** Bytes of reply fields after the status; 'variable' for GET_STATS. */
  readonly replyFields: number | 'variable';
  /** Whether FLAG_NO_REPLY is honoured. */
  readonly noReplyAllowed: boolean;
}

/** Payload types of each request and of its reply fields. */
export interface RequestTypes {
  HELLO: { request: HelloRequest; reply: HelloReply };
  SET_MEM_TABLE: { request: SetMemTableRequest; reply: Empty };
  SET_LOG_BASE: { request: SetLogBaseRequest; reply: Empty };
  CREATE_DEVICE: { request: CreateDeviceRequest; reply: CreateDeviceReply };
  SET_DEVICE_ATTR: { request: DeviceAttrRequest; reply: AttrValueReply };
  GET_DEVICE_ATTR: { request: DeviceAttrRequest; reply: AttrValueReply };
  HAS_DEVICE_ATTR: { request: DeviceAttrRequest; reply: Empty };
  MMIO: { request: MmioRequest; reply: MmioReply };
  SIGNAL_MSI: { request: KvmMsi; reply: Empty };
  SIGNAL_MSI_BATCH: { request: MsiBatchRequest; reply: MsiBatchReply };
  SET_VCPUS: { request: SetVcpusRequest; reply: Empty };
  SET_VCPU_NOTIFY_FD: { request: SetVcpuNotifyFdRequest; reply: Empty };
  ACK_LPI: { request: AckLpiRequest; reply: AckLpiReply };
  SUSPEND: { request: Empty; reply: Empty };
  RESUME: { request: Empty; reply: Empty };
  GET_STATS: { request: Empty; reply: StatsReply };
}

/** A rule plus the codecs of its request payload and reply fields. */
export interface RequestSpec<N extends RequestName> extends RequestRule {
  readonly name: N;
  readonly requestCodec: PayloadCodec<RequestTypes[N]['request']>;
  readonly replyCodec: PayloadCodec<RequestTypes[N]['reply']>;
}

const exact = (size: number): PayloadRule => ({ kind: 'exact', size });
const fds = (count: number): FdRule => ({ kind: 'exact', count });

function spec<N extends RequestName>(
  name: N,
  payload: PayloadRule,
  fdRule: FdRule,
  feature: number,
  replyFields: number | 'variable',
  requestCodec: PayloadCodec<RequestTypes[N]['request']>,
  replyCodec: PayloadCodec<RequestTypes[N]['reply']>,
  noReplyAllowed = false,
): RequestSpec<N> {
  return Object.freeze({ code: Request[name], name, payload, fds: fdRule, feature, replyFields, noReplyAllowed, requestCodec, replyCodec });
}

/** The v1 request table by name. */
export const REQUESTS: { readonly [N in RequestName]: RequestSpec<N> } = Object.freeze({
  HELLO: spec('HELLO', exact(16), fds(0), 0, 16, HelloRequestCodec, HelloReplyCodec),
  SET_MEM_TABLE: spec(
    'SET_MEM_TABLE',
    { kind: 'counted', headSize: MEM_TABLE_HEAD_SIZE, elementSize: MEM_REGION_SIZE, min: 1, max: MAX_MEM_REGIONS },
    { kind: 'per-element' },
    0, 0, SetMemTableRequestCodec, EmptyCodec,
  ),
  SET_LOG_BASE: spec('SET_LOG_BASE', exact(16), fds(1), Feature.DIRTY_LOG, 0, SetLogBaseRequestCodec, EmptyCodec),
  CREATE_DEVICE: spec('CREATE_DEVICE', exact(8), fds(0), 0, 8, CreateDeviceRequestCodec, CreateDeviceReplyCodec),
  SET_DEVICE_ATTR: spec('SET_DEVICE_ATTR', exact(24), fds(0), 0, 8, DeviceAttrRequestCodec, AttrValueReplyCodec),
  GET_DEVICE_ATTR: spec('GET_DEVICE_ATTR', exact(24), fds(0), 0, 8, DeviceAttrRequestCodec, AttrValueReplyCodec),
  HAS_DEVICE_ATTR: spec('HAS_DEVICE_ATTR', exact(24), fds(0), 0, 0, DeviceAttrRequestCodec, EmptyCodec),
  MMIO: spec('MMIO', exact(24), fds(0), 0, 8, MmioRequestCodec, MmioReplyCodec),
  SIGNAL_MSI: spec('SIGNAL_MSI', exact(KVM_MSI_SIZE), fds(0), 0, 0, KvmMsiCodec, EmptyCodec, true),
  SIGNAL_MSI_BATCH: spec(
    'SIGNAL_MSI_BATCH',
    { kind: 'counted', headSize: MSI_BATCH_HEAD_SIZE, elementSize: KVM_MSI_SIZE, min: 1, max: MAX_MSI_BATCH },
    fds(0), Feature.MSI_BATCH, 8, MsiBatchRequestCodec, MsiBatchReplyCodec, true,
  ),
  SET_VCPUS: spec('SET_VCPUS', exact(8), fds(0), 0, 0, SetVcpusRequestCodec, EmptyCodec),
  SET_VCPU_NOTIFY_FD: spec('SET_VCPU_NOTIFY_FD', exact(8), fds(1), Feature.NOTIFY_FD, 0, SetVcpuNotifyFdRequestCodec, EmptyCodec),
  ACK_LPI: spec('ACK_LPI', exact(8), fds(0), 0, 8, AckLpiRequestCodec, AckLpiReplyCodec),
  SUSPEND: spec('SUSPEND', exact(0), fds(0), 0, 0, EmptyCodec, EmptyCodec),
  RESUME: spec('RESUME', exact(0), fds(0), 0, 0, EmptyCodec, EmptyCodec),
  GET_STATS: spec('GET_STATS', exact(0), fds(0), 0, 'variable', EmptyCodec, StatsReplyCodec),
});

/** Every v1 request rule, in code order. */
export const REQUEST_RULES: readonly RequestRule[] = Object.freeze(
  (Object.values(REQUESTS) as RequestRule[]).slice().sort((a, b) => a.code - b.code),
);

/** Lookup by code: index = code (undefined for unknown codes). */
const BY_CODE: readonly (RequestRule | undefined)[] = (() => {
  const t: (RequestRule | undefined)[] = new Array<RequestRule | undefined>(REQUEST_CODE_LIMIT).fill(undefined);
  for (const r of REQUEST_RULES) t[r.code] = r;
  return t;
})();

export function requestRule(code: number): RequestRule | undefined {
  return code < BY_CODE.length ? BY_CODE[code] : undefined;
}

/** Name of a request code, "UNKNOWN" for codes this version does not define. */
export function requestName(code: number): string {
  return requestRule(code)?.name ?? 'UNKNOWN';
}

/**
 * Whether a payload of `size` bytes at `offset` satisfies the rule (for counted payloads
 * the count is read from the payload and must be in range). Never throws.
 */
export function payloadSizeOk(rule: PayloadRule, view: DataView, offset: number, size: number): boolean {
  switch (rule.kind) {
    case 'exact':
      return size === rule.size;
    case 'counted': {
      if (size < rule.headSize) return false;
      const count = view.getUint32(offset, true);
      return count >= rule.min && count <= rule.max && size === rule.headSize + count * rule.elementSize;
    }
    case 'variable':
      return size <= rule.max;
  }
}

/** Number of fds a request whose payload passed payloadSizeOk must carry. */
export function expectedFdCount(rule: RequestRule, view: DataView, offset: number): number {
  return rule.fds.kind === 'exact' ? rule.fds.count : view.getUint32(offset, true);
}

/** Bytes of a reply payload (status + fields) with zero-filled fields, for fixed-size replies. */
export function fixedReplyPayloadSize(rule: RequestRule): number {
  return 8 + (rule.replyFields === 'variable' ? 0 : rule.replyFields);
}
