/**
 * Streamed output for the inspection commands (`shards`, `connections`, `keys`, `tail`): one
 * row at a time, as a table (fixed column widths, so nothing has to be collected to size the
 * columns, as `kubectl get` does per page) or as JSON lines (`--json`, like `kubectl -o json`
 * but one object per line so it streams). Writes wait for the stream to drain, so a slow
 * consumer (a pager, a pipe) holds the producer back instead of growing memory. A closed pipe
 * (`| head`) ends the output quietly: `closed` turns true and writes become no-ops.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';

/** One table column: its header, width (a longer value is not cut) and alignment. */
export interface Column<T> {
  header: string;
  width: number;
  align?: 'left' | 'right' | undefined;
  value: (row: T) => string;
}

export interface RowWriter<T> {
  /** Writes one row (the header first, once, in table mode); waits while the stream is full. */
  write(row: T): Promise<void>;
  /** Writes a line of prose to the same stream (table mode) or nothing (JSON mode). */
  note(text: string): Promise<void>;
  /** True once the reader went away (EPIPE); stop producing. */
  readonly closed: boolean;
}

export interface RowWriterOptions<T> {
  out: Writable;
  /** JSON lines of `toJson(row)` instead of a table. */
  json: boolean;
  columns: readonly Column<T>[];
  toJson: (row: T) => unknown;
}

/** JSON with bigints as decimal strings and Maps as objects (what the state models hold). */
export function toJsonText(value: unknown, space?: number): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Map) return Object.fromEntries(v);
      if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
      return v;
    },
    space,
  );
}

function cell<T>(c: Column<T>, row: T): string {
  const v = c.value(row);
  return c.align === 'right' ? v.padStart(c.width) : v.padEnd(c.width);
}

export function createRowWriter<T>(options: RowWriterOptions<T>): RowWriter<T> {
  const { out, json, columns, toJson } = options;
  let closed = false;
  let headerDone = false;
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') closed = true;
    else throw err;
  });
  const line = async (text: string) => {
    if (closed) return;
    if (!out.write(`${text}\n`)) {
      await Promise.race([once(out, 'drain'), once(out, 'close')]);
    }
  };
  const tableLine = (cells: string[]) => cells.join('  ').trimEnd();
  return {
    get closed() {
      return closed;
    },
    async write(row) {
      if (json) return line(toJsonText(toJson(row)));
      if (!headerDone) {
        headerDone = true;
        await line(tableLine(columns.map((c) => cell({ ...c, value: () => c.header }, row))));
      }
      await line(tableLine(columns.map((c) => cell(c, row))));
    },
    async note(text) {
      if (!json) await line(text);
    },
  };
}
