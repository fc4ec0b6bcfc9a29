/** Structured logs (pino) to stderr, synchronously so that nothing is lost when the daemon exits. */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ name: 'vitsd', level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything (unit tests, embedding). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
