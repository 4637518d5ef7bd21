import { parseArgs } from 'node:util';
import { mkfifo } from '../../faces/fifo.js';
import { connectionHelp, connectionOptions, parseMode, positionals, withProcess } from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { UsageError } from '../usage-error.js';

export const mkfifoHelp = `Usage: postbox mkfifo NAME [options]

Makes a FIFO (named pipe): a system-owned mailbox that unrelated processes open by name, one end
to read and one to write (\`postbox fifo read NAME\`, \`postbox fifo write NAME\`). The reader sees
end of file when the last writer closes. \`postbox rm NAME\` removes the name; ends already open
keep working.

Options:
  --mode MODE          three octal digits owner/group/others, 4 read, 2 write (default 0666)
${connectionHelp}
Examples:
  postbox mkfifo temp
  postbox fifo read temp          # in one terminal
  postbox fifo write temp         # in another: type lines, Ctrl-D to end

${exitCodesHelp}`;

export async function mkfifoCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, mode: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(mkfifoHelp);
    return 0;
  }
  const [name] = positionals(rest, ['NAME']);
  if (/^#|^\d+$/.test(name!))
    throw new UsageError(
      `a FIFO name cannot start with '#' or be only digits (those read as ids): '${name}'`,
    );
  const mode = parseMode(values.mode);
  return withProcess(values, async (proc) => {
    await mkfifo(proc, name!, mode);
    return 0;
  });
}
