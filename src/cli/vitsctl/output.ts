/** Output conventions: results on stdout (text or --json), progress and errors on stderr. */

export interface Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /** A progress line on stderr (not with --quiet). */
  progress(line: string): void;
  /** The result: text lines, or one JSON document with --json. */
  result(text: string, json: unknown): void;
  error(line: string): void;
}

export function makeOutput(opts: { json?: boolean; quiet?: boolean }): Output {
  const json = opts.json === true;
  const quiet = opts.quiet === true;
  return {
    json,
    quiet,
    progress(line) {
      if (!quiet) process.stderr.write(`vitsctl: ${line}\n`);
    },
    result(text, value) {
      if (json) process.stdout.write(JSON.stringify(value, bigintReplacer, 2) + '\n');
      else if (text.length > 0) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    },
    error(line) {
      process.stderr.write(`vitsctl: ${line}\n`);
    },
  };
}

export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16)}` : value;
}

export const hex = (n: number | bigint): string => `0x${n.toString(16)}`;
