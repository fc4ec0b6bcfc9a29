/**
 * The vitsd server: one VM's devices behind a listening socket, any number of connections
 * of which one (the first to HELLO) owns the VM.
 */
import type { VmDevices } from '../attr/types.js';
import { Connection, type ConnectionRegistry } from './connection.js';
import type { DaemonHost } from './host.js';
import { Listener } from './listener.js';
import type { Logger } from './logger.js';
import { DaemonState } from './state.js';

/** Connections beyond this are closed at once (each holds buffers). */
export const MAX_CONNECTIONS = 64;

export interface ServerOptions {
  vm: VmDevices;
  host: DaemonHost;
  log: Logger;
  /** Exactly one of socketPath and fd. */
  socketPath?: string;
  fd?: number;
}

export class VitsdServer implements ConnectionRegistry {
  readonly state: DaemonState;
  private readonly listener: Listener;
  private readonly connections = new Set<Connection>();
  private nextId = 1;
  private stopped = false;

  private constructor(state: DaemonState, listener: Listener) {
    this.state = state;
    this.listener = listener;
  }

  /** Opens the listening socket and starts accepting. Throws ListenError with an operator-facing message. */
  static start(options: ServerOptions): VitsdServer {
    const { log } = options;
    let listener: Listener;
    if (options.socketPath !== undefined) {
      const r = Listener.onPath(options.socketPath);
      listener = r.listener;
      if (r.replacedStale) log.warn({ path: options.socketPath }, 'replaced a stale socket file');
    } else if (options.fd !== undefined) {
      listener = Listener.onFd(options.fd);
    } else {
      throw new Error('VitsdServer.start: socketPath or fd is required');
    }
    const server = new VitsdServer(new DaemonState(options.vm, options.host, log), listener);
    listener.start(
      (fd) => server.accepted(fd),
      (errno) => log.error({ errno }, 'accept failed'),
    );
    log.info({ path: listener.path, fd: listener.fd }, 'listening');
    return server;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private accepted(fd: number): void {
    const { state } = this;
    const id = this.nextId++;
    if (this.stopped || this.connections.size >= MAX_CONNECTIONS) {
      state.log.warn({ conn: id, open: this.connections.size }, 'too many connections: refusing one');
      state.counters.connectionsRefused++;
      state.host.closeFd(fd);
      return;
    }
    const conn = new Connection(state, this, fd, id);
    this.connections.add(conn);
    state.counters.connectionsAccepted++;
    state.connectionsOpen++;
    state.log.info({ conn: id, fd }, 'connection opened');
    try {
      conn.start();
    } catch (e) {
      state.log.error({ conn: id, err: e }, 'cannot watch the connection');
      conn.close('cannot watch the socket');
    }
  }

  connectionClosed(conn: Connection): void {
    this.connections.delete(conn);
  }

  /**
   * Stops accepting, sends what replies can be sent, closes every connection, removes the
   * socket file. Requests are handled synchronously, so none is ever half-done here.
   */
  stop(reason = 'shutdown'): void {
    if (this.stopped) return;
    this.stopped = true;
    this.listener.close();
    for (const conn of [...this.connections]) {
      conn.flushNow();
      conn.close(reason);
    }
    this.state.dispose();
    this.state.log.info({ reason }, 'stopped');
  }
}
