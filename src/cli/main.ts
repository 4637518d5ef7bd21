#!/usr/bin/env node
import { PostboxError } from '../protocol/errors.js';
import { kernelCommand, kernelHelp } from './kernel-command.js';
import { UsageError } from './usage-error.js';

const help = `Usage: postbox <command> [options]

Commands:
  kernel     start the kernel daemon

Run 'postbox <command> --help' for a command's options.
`;

const commands: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  kernel: { run: kernelCommand, help: kernelHelp },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(help);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) throw new UsageError(`unknown command '${name}'`);
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`postbox: ${(err as Error).message}\nRun 'postbox --help' for usage.\n`);
      process.exitCode = 2;
    } else if (err instanceof PostboxError) {
      process.stderr.write(`postbox: ${err.message} (${err.code})\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`postbox: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
