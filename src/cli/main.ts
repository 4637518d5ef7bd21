#!/usr/bin/env node
import { KERNEL_VERSION } from '../kernel/kernel.js';
import { PostboxError } from '../protocol/errors.js';
import { PROTOCOL_VERSION } from '../protocol/frame.js';
import { chmodCommand, chmodHelp } from './commands/chmod.js';
import { createCommand, createHelp } from './commands/create.js';
import { fifoCommand, fifoHelp } from './commands/fifo.js';
import { grantCommand, grantHelp, revokeCommand, revokeHelp } from './commands/grant.js';
import { limitsCommand, limitsHelp } from './commands/limits.js';
import { lsCommand, lsHelp } from './commands/ls.js';
import { mkfifoCommand, mkfifoHelp } from './commands/mkfifo.js';
import { passkeyCommand, passkeyHelp } from './commands/passkey.js';
import { psCommand, psHelp } from './commands/ps.js';
import { recvCommand, recvHelp } from './commands/recv.js';
import { rmCommand, rmHelp } from './commands/rm.js';
import { sendCommand, sendHelp } from './commands/send.js';
import { statCommand, statHelp } from './commands/stat.js';
import { watchCommand, watchHelp } from './commands/watch.js';
import { KernelNotRunningError } from './common.js';
import { printDiagnostic } from './diagnostic.js';
import { Exit, exitCodeFor, exitCodesHelp } from './exit-codes.js';
import { interrupt } from './interrupt.js';
import { kernelCommand, kernelHelp } from './kernel-command.js';
import { parseArgsUsageError, UsageError } from './usage-error.js';

interface Command {
  run: (argv: string[]) => Promise<number>;
  help: string;
  summary: string;
}

const commands: Record<string, Command> = {
  kernel: { run: kernelCommand, help: kernelHelp, summary: 'start the kernel daemon' },
  ls: { run: lsCommand, help: lsHelp, summary: 'list mailboxes (like ipcs -q)' },
  stat: { run: statCommand, help: statHelp, summary: "one mailbox's counts, limits and times (msqid_ds)" },
  limits: {
    run: limitsCommand,
    help: limitsHelp,
    summary: "the kernel's limits and how to change them (ipcs -l)",
  },
  ps: { run: psCommand, help: psHelp, summary: 'connected processes and what each is blocked on' },
  create: { run: createCommand, help: createHelp, summary: 'create a mailbox (system-owned)' },
  rm: { run: rmCommand, help: rmHelp, summary: 'remove mailboxes; unlink FIFOs (ipcrm)' },
  passkey: {
    run: passkeyCommand,
    help: passkeyHelp,
    summary: "replace a mailbox's passkey (the old one opens nothing more)",
  },
  chmod: {
    run: chmodCommand,
    help: chmodHelp,
    summary: "change who may send and receive (a mailbox's mode)",
  },
  grant: {
    run: grantCommand,
    help: grantHelp,
    summary: "add processes to a mailbox's group, while they live",
  },
  revoke: { run: revokeCommand, help: revokeHelp, summary: "take processes out of a mailbox's group" },
  send: { run: sendCommand, help: sendHelp, summary: 'send TEXT, or standard input line by line' },
  recv: { run: recvCommand, help: recvHelp, summary: 'receive messages to standard output' },
  watch: { run: watchCommand, help: watchHelp, summary: 'live view of mailboxes, processes and who waits' },
  mkfifo: { run: mkfifoCommand, help: mkfifoHelp, summary: 'make a FIFO (named pipe)' },
  fifo: {
    run: fifoCommand,
    help: fifoHelp,
    summary: 'read or write a FIFO (fifo read NAME, fifo write NAME)',
  },
};

const help = `Usage: postbox <command> [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(9)}  ${c.summary}`)
  .join('\n')}

Every command but kernel finds the kernel by --socket PATH or --url tcp://HOST:PORT, else
$POSTBOX_URL, else $POSTBOX_SOCKET, else the per-user default socket; --json gives scripts JSON.
A command that opens a mailbox presents its passkey from --passkey-file FILE, else
$POSTBOX_PASSKEY (never an argument: every user's \`ps\` shows those).
Run 'postbox <command> --help' for a command's options and examples; 'postbox --version' for
the version.

Examples:
  postbox kernel &
  postbox create jobs --capacity 10
  printf 'one\\ntwo\\n' | postbox send jobs
  postbox recv jobs --all

${exitCodesHelp}`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' && rest[0] !== undefined ? commands[rest[0]] : undefined;
    // `postbox help frobnicate` printed the general help and exited 0, as if there were such a
    // command; it is the same mistake as `postbox frobnicate`.
    if (name === 'help' && rest[0] !== undefined && !Object.hasOwn(commands, rest[0]))
      throw new UsageError(`unknown command '${rest[0]}'`);
    // No command at all is a usage error: its help goes where errors go, not into a pipe.
    (name === undefined ? process.stderr : process.stdout).write(topic?.help ?? help);
    return name === undefined ? Exit.USAGE : Exit.OK;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(
      `postbox ${KERNEL_VERSION} (protocol ${PROTOCOL_VERSION}, node ${process.version})\n`,
    );
    return Exit.OK;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (command === undefined) throw new UsageError(`unknown command '${name}'`);
  return command.run(rest);
}

// Nobody reads our output any more (`postbox recv --follow | head -1`): stop quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') interrupt('EPIPE');
});
// Nobody reads our diagnostics any more (`postbox kernel 2>&1 | head -1`, a log collector that
// died): there is nowhere left to report that, and without a listener the error ended the
// process, so the kernel dropped every client at its next log line and left its socket behind.
process.stderr.on('error', () => {});

const commandName = process.argv[2];
const known = commandName !== undefined && Object.hasOwn(commands, commandName) ? commandName : null;
const hint = known !== null ? `postbox ${known} --help` : 'postbox --help';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof UsageError ? err : parseArgsUsageError(err, process.argv.slice(2));
    if (usage !== null) {
      printDiagnostic(known, `${usage.message}\nRun '${hint}' for usage.`);
      process.exitCode = Exit.USAGE;
    } else if (err instanceof PostboxError) {
      // Every error names its code once: not again after a message that names it, or names the
      // OS's cause in its place (the kernel is not running: ENOENT, then how to start one).
      const named = err instanceof KernelNotRunningError || err.message.includes(`(${err.code})`);
      const code = named ? '' : ` (${err.code})`;
      const exit = exitCodeFor(err);
      // An argument the kernel refused is a usage error like any other, with the same hint.
      const more = exit === Exit.USAGE ? `\nRun '${hint}' for usage.` : '';
      printDiagnostic(known, `${err.message}${code}${more}`);
      process.exitCode = exit;
    } else {
      printDiagnostic(known, (err as Error).stack ?? String(err));
      process.exitCode = Exit.ERROR;
    }
  },
);
