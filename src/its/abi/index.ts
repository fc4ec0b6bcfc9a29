/** KVM's ITS table ABI (revision 0): entry codecs, save, restore, incremental save. */
export { DeviceTableEntry } from './dte.js';
export { InterruptTranslationEntry } from './ite.js';
export { CollectionTableEntry, CTE_TARGET_NOT_MAPPED } from './cte.js';
export { Level1Entry, L2_ENTRIES, L2_PAGE_SIZE } from './level1.js';
export { decodeBaser, encodeBaser, BASER_TYPE_DEVICE, BASER_TYPE_COLLECTION, type TableGeometry } from './baser.js';
export { locateSlot, LOCATE_OUT_OF_TABLE, LOCATE_NOT_IN_MEMORY } from './locate.js';
export { TableError } from './errors.js';
export { scanTable, TableReader, SCAN_LAST_FOUND, SCAN_RAN_OFF } from './scan.js';
export { restoreTables, RestoredTables, MAX_DTE_EVENTID_BITS, type RestoreSummary } from './restore.js';
export { ItsTableSaver, type ItsSaveLookups, type SaveOptions, type SaveResult } from './save.js';
export { ITS_TABLE_ABIS, itsTableAbi, abiOf, ItsTables, type ItsTableAbi } from './abi.js';
