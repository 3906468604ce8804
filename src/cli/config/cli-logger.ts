/**
 * The CLI's pino logger: JSON lines on stdout (what log shippers and tests read), or
 * pino-pretty's human format when stdout is a terminal (`--log-format auto`, the default).
 * Both write synchronously, so the last lines before an exit are never lost. Colours only on a
 * terminal (`--log-format pretty` into a pipe or file stays plain text).
 */
import { type LevelWithSilent, type Logger, pino } from 'pino';
import PinoPretty from 'pino-pretty';
import type { LogFormat } from './broker-options.js';

export function createCliLogger(options: {
  level: LevelWithSilent;
  format: LogFormat;
  /** @default process.stdout.isTTY */
  isTty?: boolean | undefined;
  name?: string | undefined;
}): Logger {
  const tty = options.isTty ?? process.stdout.isTTY === true;
  const pretty = options.format === 'pretty' || (options.format === 'auto' && tty);
  const base = { level: options.level, name: options.name };
  if (pretty) {
    return pino(base, PinoPretty({ colorize: tty, sync: true, destination: 1 }));
  }
  return pino(base, pino.destination({ dest: 1, sync: true }));
}
