/** Public surface of the ITS core. */
export * from './types.js';
export * from './table-state.js';
export { Its, type ItsOptions } from './its.js';
export { ZeroingTableWriter, type ItsTableWriter, type TableWriterHost } from './table-writer.js';
export { locateEntry, locateEntryIn, locateSlotIn, locateTableSlot, LOCATE_OUT_OF_TABLE, LOCATE_NOT_IN_MEMORY, decodeBaser, baserAddress, baserTableBytes, cbaserAddress, cmdQueueBytes, type BaserGeometry } from './tables.js';
export { GITS_TYPER_VALUE } from './constants.js';
export { INITIAL_BASER_DEVICE, INITIAL_BASER_COLLECTION } from './registers.js';
export { OPCODES } from './commands/dispatch.js';
export { COLLECTION_ABSENT, ICID_NONE, EVENTS_PER_PAGE, DEFAULT_MAX_EVENT_PAGES } from './translation.js';
