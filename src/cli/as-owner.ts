import type { Mailbox, MailboxStat } from '../client/mailbox.js';
import type { PostboxProcess } from '../client/process.js';
import { passkeyFor } from './passkey-file.js';

/**
 * Runs `fn` on a handle to `found` that may do its owner's operations (delete, chmod, grant...),
 * and closes it. Role 'none': it counts as neither a reader nor a writer, so opening it does not
 * disturb a FIFO's ends. The passkey, where the command has one (`--passkey-file`,
 * `$POSTBOX_PASSKEY`), makes this process one of the group, which alone acts as the owner of an
 * unowned mailbox that has a passkey.
 */
export async function asOwner<T>(
  proc: PostboxProcess,
  found: MailboxStat,
  passkeyFile: string | undefined,
  fn: (mb: Mailbox) => Promise<T>,
): Promise<T> {
  const mb = await proc.openMailbox(found.id, { role: 'none', passkey: passkeyFor(passkeyFile, found) });
  try {
    return await fn(mb);
  } finally {
    mb.close();
  }
}
