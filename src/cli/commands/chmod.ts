import { parseArgs } from 'node:util';
import { asOwner } from '../as-owner.js';
import { connectionHelp, connectionOptions, findMailbox, parseMode, withOperatorProcess } from '../common.js';
import { forEachMailbox } from '../each-mailbox.js';
import { exitCodesHelp } from '../exit-codes.js';
import { passkeyFileHelp, passkeyFileOption } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

export const chmodHelp = `Usage: postbox chmod MODE NAME... [options]

Changes who may send to and receive from mailboxes, like chmod(1) on a file. MODE is three octal
digits, owner/group/others, 4 receive and 2 send, as \`create --mode\` takes it: 0660 lets only the
owner and the group (\`postbox grant\`, or a passkey) in, 0662 lets anyone send. It holds at once,
for processes already waiting too. Only the owner may (EACCES, exit 5). A mailbox made by
\`postbox create\` has none once that command has ended: then any process may, or, if it has a
passkey, one that presents it. NAME may be #ID or an id. With several names, each is tried; the
exit code is the first failure's.

Options:
  --json               the mode each mailbox has now, as a JSON array
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox chmod 660 jobs          # the group's alone: grant processes in with postbox grant
  postbox chmod 0662 inbox outbox # anyone sends, the group receives

${exitCodesHelp}`;

export async function chmodCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, json: { type: 'boolean' }, ...passkeyFileOption },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(chmodHelp);
    return 0;
  }
  const [given, ...refs] = rest;
  if (given === undefined) throw new UsageError('missing MODE and NAME');
  const mode = parseMode(given, 'MODE')!;
  if (refs.length === 0) throw new UsageError('missing NAME');
  return withOperatorProcess(values, (proc) =>
    forEachMailbox('chmod', refs, values.json === true, async (ref) => {
      const found = await findMailbox(proc, ref);
      const info = await asOwner(proc, found, values['passkey-file'], (mb) => mb.chmod(mode));
      return { id: info.id, name: info.name, mode: info.mode };
    }),
  );
}
