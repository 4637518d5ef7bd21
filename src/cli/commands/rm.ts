import { parseArgs } from 'node:util';
import { asOwner } from '../as-owner.js';
import { connectionHelp, connectionOptions, findMailbox, withOperatorProcess } from '../common.js';
import { forEachMailbox } from '../each-mailbox.js';
import { exitCodesHelp } from '../exit-codes.js';
import { passkeyFileHelp, passkeyFileOption } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

export const rmHelp = `Usage: postbox rm NAME... [options]

Removes mailboxes, like \`ipcrm -q\`. A mailbox is deleted at once: processes waiting on it fail
with EIDRM. A FIFO (made by \`postbox mkfifo\`) is unlinked instead, like rm on a named pipe: its
name goes now, ends already open keep working, and it goes when the last one closes. So is a
POSIX queue (made by mq_open), as \`rm /dev/mqueue/NAME\` and mq_unlink do: descriptors open on
it keep working. An anonymous pipe (#ID), which has no name, is deleted. Only the
owner may remove a mailbox (anyone, once its owner has terminated; one with a passkey, such as
an anonymous pipe or one made by \`postbox create --passkey\`, only the processes it was handed
to: give this command its passkey). NAME may be #ID or an id.
With several names, each is tried; the exit code is the first failure's.

Options:
  --unlink             remove only the name of any mailbox: it goes at its last close
  --json               what was done to each, as a JSON array
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox rm jobs
  postbox rm temp            # a FIFO: open ends keep working
  postbox rm /jobs           # a POSIX queue: open descriptors keep working
  postbox rm '#12' '#13'

${exitCodesHelp}`;

export async function rmCommand(argv: string[]): Promise<number> {
  const { values, positionals: refs } = parseArgs({
    args: argv,
    options: {
      ...connectionOptions,
      unlink: { type: 'boolean' },
      json: { type: 'boolean' },
      ...passkeyFileOption,
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(rmHelp);
    return 0;
  }
  if (refs.length === 0) throw new UsageError('missing NAME');
  return withOperatorProcess(values, (proc) =>
    forEachMailbox('rm', refs, values.json === true, async (ref) => {
      const mb = await findMailbox(proc, ref);
      // An anonymous pipe has no name to unlink: rm of its #ID deletes it, or nothing would be
      // done and the command would say it was. A POSIX queue is the one mailbox whose rights are
      // its descriptors' (rightsAtOpen): deleting it would fail descriptors that Linux keeps.
      const unlink = values.unlink === true || (mb.name !== null && (mb.endOnLastWriter || mb.rightsAtOpen));
      await asOwner(proc, mb, values['passkey-file'], (h) => (unlink ? h.unlink() : h.delete()));
      return { id: mb.id, name: mb.name, action: unlink ? 'unlinked' : 'deleted' };
    }),
  );
}
