/** A bench's usage text (the leading doc comment of its compiled module) and its usage errors. */

/**
 * A bad option value, found by a bench's own validation: `main.ts` prints it as one line with
 * exit code 2, as it does `parseArgs`'s errors, not as a stack trace.
 */
export class UsageError extends Error {
  readonly code = 'ERR_BENCH_USAGE';
}

/** The leading doc comment of a compiled bench module, without its comment markers. */
export function leadingDocComment(source: string): string | undefined {
  const m = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source);
  if (m === null) return undefined;
  return m[1]!
    .split('\n')
    .map((line) => line.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim();
}
