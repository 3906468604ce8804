/** A bench's usage text: the leading doc comment of its compiled module. */

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
