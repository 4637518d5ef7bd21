import { parseArgs } from 'node:util';
import type { Mailbox } from '../../client/mailbox.js';
import type { PostboxProcess, ProcessRef } from '../../client/process.js';
import { NoProcessError } from '../../protocol/errors.js';
import { asOwner } from '../as-owner.js';
import {
  connectionHelp,
  connectionOptions,
  findMailbox,
  printJson,
  processOperand,
  withOperatorProcess,
} from '../common.js';
import { printDiagnostic } from '../diagnostic.js';
import { Exit, exitCodeFor, exitCodesHelp } from '../exit-codes.js';
import { passkeyFileHelp, passkeyFileOption } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

/** What grant and revoke have in common: who may, and how PROCESS and NAME are read. */
const groupHelp = `PROCESS is a connected process's name or id, as \`postbox ps\` shows it. Only the mailbox's
owner may (EACCES, exit 5). A mailbox made by \`postbox create\` has none once that command has
ended: then any process may, or, if it has a passkey, one that presents it. NAME may be #ID or
an id. With several processes, each is tried; the exit code is the first failure's.`;

export const grantHelp = `Usage: postbox grant NAME PROCESS... [options]

Adds processes to a mailbox's group: each gets the rights of the mode's middle digit (0660:
send and receive, which others may not). A grant lasts only while its process lives: it ends
when the process does, and a process that connects again, even under the same name, is not in
the group.

${groupHelp}

Options:
  --json               each process and the mailbox's group after it, as a JSON array
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox chmod 660 jobs && postbox grant jobs worker-1 worker-2
  postbox grant private 17 --passkey-file ~/.private.key

${exitCodesHelp}`;

export const revokeHelp = `Usage: postbox revoke NAME PROCESS... [options]

Takes processes out of a mailbox's group, as \`postbox grant\` or its passkey put them in. It
holds at once: a receive or send one has waiting fails (EACCES), unless the mode's last digit
lets it in anyway. A process leaves every group when it ends, without this.

${groupHelp}

Options:
  --json               each process and the mailbox's group after it, as a JSON array
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox revoke jobs worker-2

${exitCodesHelp}`;

export function grantCommand(argv: string[]): Promise<number> {
  return groupCommand('grant', grantHelp, argv);
}

export function revokeCommand(argv: string[]): Promise<number> {
  return groupCommand('revoke', revokeHelp, argv);
}

async function groupCommand(op: 'grant' | 'revoke', help: string, argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, json: { type: 'boolean' }, ...passkeyFileOption },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    return 0;
  }
  const [ref, ...given] = rest;
  if (ref === undefined) throw new UsageError('missing NAME and PROCESS');
  if (given.length === 0) throw new UsageError('missing PROCESS');
  // Every operand is read before anything changes: a mistyped one does not leave half done.
  const targets = given.map((p) => [p, processOperand(p, 'PROCESS')] as const);
  return withOperatorProcess(values, async (proc) => {
    const found = await findMailbox(proc, ref);
    return asOwner(proc, found, values['passkey-file'], async (mb) => {
      let code: number = Exit.OK;
      const done: Record<string, unknown>[] = [];
      for (const [given, target] of targets) {
        try {
          done.push({ ref: given, ...(await change(proc, mb, op, target)) });
        } catch (err) {
          // A process that is not there is that operand's failure; any other refusal (not the
          // owner, the mailbox gone) is the mailbox's, and would be the same for every one.
          if (!(err instanceof NoProcessError)) throw err;
          printDiagnostic(op, `${err.message} (${err.code})`);
          done.push({ ref: given, error: err.code, message: err.message });
          if (code === Exit.OK) code = exitCodeFor(err);
        }
      }
      if (values.json) printJson(done);
      return code;
    });
  });
}

/**
 * Grants or revokes one process, looked up first so that what is printed names it (and a name
 * is resolved once: the grant goes to the process the lookup found).
 */
async function change(
  proc: PostboxProcess,
  mb: Mailbox,
  op: 'grant' | 'revoke',
  target: ProcessRef,
): Promise<Record<string, unknown>> {
  const p = await proc.lookup(target);
  const info = op === 'grant' ? await mb.grant(p.id) : await mb.revoke(p.id);
  return { process: p.id, name: p.name, mailbox: info.id, group: info.group };
}
