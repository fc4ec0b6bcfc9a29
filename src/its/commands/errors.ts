/**
 * Command outcomes. KVM discards them (no SError, no stall; kvm-its-abi.md 6.1): we count
 * them by name in ItsStats.commandErrors. E_ITS_* names follow Linux's arm-gic-v3.h; the
 * others are KVM's negative errnos or our own guest-memory fault counters.
 */

export const CMD_OK = 0;
export const E_MOVI_UNMAPPED_INTERRUPT = 1;
export const E_MOVI_UNMAPPED_COLLECTION = 2;
export const E_INT_UNMAPPED_INTERRUPT = 3;
export const E_CLEAR_UNMAPPED_INTERRUPT = 4;
export const E_MAPD_DEVICE_OOR = 5;
export const E_MAPD_ITTSIZE_OOR = 6;
export const E_MAPC_PROCNUM_OOR = 7;
export const E_MAPC_COLLECTION_OOR = 8;
export const E_MAPTI_UNMAPPED_DEVICE = 9;
export const E_MAPTI_ID_OOR = 10;
export const E_MAPTI_PHYSICALID_OOR = 11;
export const E_INV_UNMAPPED_INTERRUPT = 12;
export const E_INVALL_UNMAPPED_COLLECTION = 13;
export const E_MOVALL_PROCNUM_OOR = 14;
export const E_DISCARD_UNMAPPED_INTERRUPT = 15;
/** INT whose target vCPU has EnableLPIs = 0 (KVM: -EBUSY). */
export const E_INT_LPIS_DISABLED = 16;
/** MAPTI/MAPI beyond the event-page cap (KVM: -ENOMEM from the ITE allocation). */
export const E_ENOMEM = 17;
/** MAPTI/MAPI whose LPI could not be created: property/pending table fault (KVM: -EFAULT). */
export const E_EFAULT = 18;
/** The 32-byte command could not be read from guest memory (KVM skips it). */
export const E_CMD_READ_FAULT = 19;
/** Zeroing the DTE (MAPD V=0) or the ITE (DISCARD) in guest RAM failed (KVM: -EFAULT, ignored). */
export const E_DTE_WRITE_FAULT = 20;
export const E_ITE_WRITE_FAULT = 21;
/** An exception escaped a handler (a bug; caught so that guest paths never throw). */
export const E_INTERNAL = 22;

/** Counter names, indexed by the codes above (index 0 unused). */
export const COMMAND_ERROR_NAMES: readonly string[] = [
  'OK',
  'MOVI_UNMAPPED_INTERRUPT',
  'MOVI_UNMAPPED_COLLECTION',
  'INT_UNMAPPED_INTERRUPT',
  'CLEAR_UNMAPPED_INTERRUPT',
  'MAPD_DEVICE_OOR',
  'MAPD_ITTSIZE_OOR',
  'MAPC_PROCNUM_OOR',
  'MAPC_COLLECTION_OOR',
  'MAPTI_UNMAPPED_DEVICE',
  'MAPTI_ID_OOR',
  'MAPTI_PHYSICALID_OOR',
  'INV_UNMAPPED_INTERRUPT',
  'INVALL_UNMAPPED_COLLECTION',
  'MOVALL_PROCNUM_OOR',
  'DISCARD_UNMAPPED_INTERRUPT',
  'INT_LPIS_DISABLED',
  'ENOMEM',
  'EFAULT',
  'cmd_read_fault',
  'dte_write_fault',
  'ite_write_fault',
  'internal_error',
];

/** Architectural error codes (0x01CCEE), for logs; 0 where the outcome is not an E_ITS_* code. */
export const COMMAND_ERROR_CODES: readonly number[] = [
  0, 0x010107, 0x010109, 0x010307, 0x010507, 0x010801, 0x010802, 0x010902, 0x010903, 0x010a04, 0x010a05, 0x010a06,
  0x010c07, 0x010d09, 0x010e01, 0x010f07, 0, 0, 0, 0, 0, 0, 0,
];
