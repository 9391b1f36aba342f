/**
 * Reading a command's argv, shared by the commands of src/cli/commands/ (all but `pme up`, which
 * passes the flags it does not know on to the service): flags declared by name, string or
 * boolean, plus `--help` / `-h`, parsed strictly by node:util parseArgs (an unknown flag, a
 * missing value or a positional argument is an error).
 */
import { parseArgs } from 'node:util';

/** The flags given: a string flag's value, a boolean flag's presence. */
export type Flags<S extends string, B extends string> = { [K in S]?: string } & {
  [K in B | 'help']?: boolean;
};

/**
 * Parses `argv` for the string flags `strings` and the boolean flags `booleans`.
 * @throws TypeError (parseArgs') on an unknown flag, a flag without its value or a positional
 */
export function parseFlags<S extends string, B extends string = never>(
  argv: string[],
  strings: readonly S[],
  booleans: readonly B[] = [],
): Flags<S, B> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const name of strings) options[name] = { type: 'string' };
  for (const name of booleans) options[name] = { type: 'boolean' };
  options.help = { type: 'boolean', short: 'h' };
  return parseArgs({ args: argv, options }).values as Flags<S, B>;
}

/**
 * `parseFlags` for `pme <command>`, ending the command where argv says so: a usage error prints
 * `pme <command>: <message>`, a blank line and `usage` on stderr and gives exit code 2; `--help`
 * prints `usage` on stdout and gives 0. Otherwise returns the flags.
 */
export function commandFlags<S extends string, B extends string = never>(
  command: string,
  usage: string,
  argv: string[],
  strings: readonly S[],
  booleans: readonly B[] = [],
): Flags<S, B> | number {
  let flags: Flags<S, B>;
  try {
    flags = parseFlags(argv, strings, booleans);
  } catch (error) {
    process.stderr.write(`pme ${command}: ${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(usage);
    return 0;
  }
  return flags;
}
