/** The VMM-side client library of the vitsd wire protocol. */
export { VitsdClient, DEFAULT_REQUEST_TIMEOUT_MS, type VitsdClientOptions, type RequestOptions, type MemTableRegion, type MsiRequest, type BatchResult, type ClientStats } from './client.js';
export { VitsdError, VitsdBatchError, ClientErrno, clientErrnoName, isVitsdError } from './errors.js';
export { SocketConnection, type FrameSink } from './socket-connection.js';
