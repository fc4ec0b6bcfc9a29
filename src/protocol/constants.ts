/**
 * Constants of the vitsd wire protocol, version 1 (../shared/spec/protocol.md).
 * Shared by the daemon (src/daemon) and the client library (src/client).
 */

export const PROTOCOL_VERSION = 1;

/** Every message starts with this 16-byte header: u32 request, u32 flags, u32 size, u32 seq. */
export const HEADER_SIZE = 16;
export const HEADER_REQUEST_OFFSET = 0;
export const HEADER_FLAGS_OFFSET = 4;
export const HEADER_SIZE_OFFSET = 8;
export const HEADER_SEQ_OFFSET = 12;

/** Largest payload a message may carry (a larger `size` is a framing error). */
export const MAX_PAYLOAD_SIZE = 1 << 20;

// ---- header flags ----
/** Bits 0-1: protocol version (must be 1). */
export const FLAG_VERSION_MASK = 0x3;
/** Bit 2: set by the daemon on replies only. */
export const FLAG_REPLY = 0x4;
/** Bit 3: the frontend asks for no reply (honoured for SIGNAL_MSI and SIGNAL_MSI_BATCH only). */
export const FLAG_NO_REPLY = 0x8;
/** Bits 4-31 must be zero. */
export const FLAG_RESERVED_MASK = 0xfffffff0;
/** flags of every reply the daemon sends. */
export const REPLY_FLAGS = PROTOCOL_VERSION | FLAG_REPLY;

/** A reply payload starts with `i32 status, u32 reserved`. */
export const REPLY_STATUS_SIZE = 8;

// ---- request codes ----
export const Request = {
  HELLO: 1,
  SET_MEM_TABLE: 2,
  SET_LOG_BASE: 3,
  CREATE_DEVICE: 4,
  SET_DEVICE_ATTR: 5,
  GET_DEVICE_ATTR: 6,
  HAS_DEVICE_ATTR: 7,
  MMIO: 8,
  SIGNAL_MSI: 9,
  SIGNAL_MSI_BATCH: 10,
  SET_VCPUS: 11,
  SET_VCPU_NOTIFY_FD: 12,
  ACK_LPI: 13,
  SUSPEND: 14,
  RESUME: 15,
  GET_STATS: 16,
} as const;
export type RequestName = keyof typeof Request;
export type RequestCode = (typeof Request)[RequestName];
/** One past the largest request code this version defines (table size). */
export const REQUEST_CODE_LIMIT = 17;
/** Codes the implementation may add start here (protocol.md: ">= 64"). */
export const FIRST_EXTENSION_CODE = 64;

// ---- feature bits (HELLO, u64; all defined bits fit in the low word) ----
export const Feature = {
  /** SET_LOG_BASE. */
  DIRTY_LOG: 1 << 0,
  /** SIGNAL_MSI_BATCH. */
  MSI_BATCH: 1 << 1,
  /** SET_VCPU_NOTIFY_FD. */
  NOTIFY_FD: 1 << 2,
  /** State kept across a disconnect; HELLO reports `resumed`. */
  RECONNECT: 1 << 3,
} as const;
export type FeatureName = keyof typeof Feature;
/** Capability names as printed by `vitsd --print-capabilities`. */
export const FEATURE_CAPABILITY_NAMES: Readonly<Record<FeatureName, string>> = {
  DIRTY_LOG: 'dirty-log',
  MSI_BATCH: 'msi-batch',
  NOTIFY_FD: 'notify-fd',
  RECONNECT: 'reconnect',
};
/** Every feature this implementation supports. */
export const SUPPORTED_FEATURES = Feature.DIRTY_LOG | Feature.MSI_BATCH | Feature.NOTIFY_FD | Feature.RECONNECT;

// ---- limits and sizes of payloads ----
export const MAX_MEM_REGIONS = 8;
export const MEM_TABLE_HEAD_SIZE = 8;
export const MEM_REGION_SIZE = 24;
/** Addresses, sizes and offsets of memory regions and the dirty log are multiples of this. */
export const GUEST_PAGE_SIZE = 4096;

/** sizeof(struct kvm_msi). */
export const KVM_MSI_SIZE = 32;
export const KVM_MSI_ADDRESS_LO_OFFSET = 0;
export const KVM_MSI_ADDRESS_HI_OFFSET = 4;
export const KVM_MSI_DATA_OFFSET = 8;
export const KVM_MSI_FLAGS_OFFSET = 12;
export const KVM_MSI_DEVID_OFFSET = 16;
export const MSI_BATCH_HEAD_SIZE = 8;
export const MAX_MSI_BATCH = 16384;

export const MAX_VCPUS = 512;
/** ITS devices per VM (a 17th gets -ENOSPC). */
export const MAX_ITS = 16;

/** MMIO access lengths allowed on the wire. */
export const MMIO_LENGTHS: readonly number[] = [1, 2, 4, 8];

/** ACK_LPI flags bit 0: report only, do not clear. */
export const ACK_LPI_PEEK = 1;
/** ACK_LPI "no LPI". */
export const ACK_NONE_INTID = 1023;
export const ACK_NONE_PRIORITY = 0xff;

/** CREATE_DEVICE flags bit 0 (KVM_CREATE_DEVICE_TEST). */
export const CREATE_DEVICE_TEST = 1;
