/**
 * How the command line finds the one mailbox a command names (`postbox send NAME`, `recv #ID`,
 * `stat 18`, `rm`, `fifo`): by name, `#ID` or a bare number, never a process's inbox, never a
 * name that was unlinked. It asks the kernel for that mailbox alone: with 100,000 mailboxes,
 * listing them all to find one took each command 2 s and 180 MB.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { findMailbox } from '../src/cli/common.js';
import { connect, NotFoundError, type PostboxProcess } from '../src/client/mod.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';

describe('the command line finds one mailbox', () => {
  let kernel: TestKernel;
  let owner: PostboxProcess;
  /** The process the command line would be: it may stat and look up, never list. */
  let cli: PostboxProcess;

  before(async () => {
    kernel = await startTestKernel();
    owner = await connect({ socket: kernel.socket, name: 'owner' });
    cli = await connect({ socket: kernel.socket });
    const listed = (): never => {
      throw new Error('a whole list was asked for, to find one mailbox');
    };
    Object.assign(cli, { mailboxes: listed, mailboxPages: listed, processes: listed });
  });
  after(async () => {
    await cli.close();
    await owner.close();
    await kernel.stop();
  });

  /** The ENOENT findMailbox gives for ref, with its message. */
  async function missing(ref: string, message: RegExp): Promise<void> {
    await assert.rejects(findMailbox(cli, ref), (err: unknown) => {
      assert.ok(err instanceof NotFoundError, `${ref}: ${String(err)}`);
      assert.match(err.message, message);
      return true;
    });
  }

  test('by name, by #ID and by a bare number', async () => {
    const mb = await owner.createMailbox('find-alpha', { capacity: 3 });
    assert.equal((await findMailbox(cli, 'find-alpha')).id, mb.id);
    const byHash = await findMailbox(cli, `#${mb.id}`);
    assert.equal(byHash.name, 'find-alpha');
    assert.equal(byHash.capacity, 3);
    assert.equal(byHash.inboxOf, null);
    assert.equal((await findMailbox(cli, String(mb.id))).name, 'find-alpha');
    await mb.close();
  });

  test('a bare number is an id before it is a name; a name of digits is found when no id is', async () => {
    const first = await owner.createMailbox('find-first');
    // A name of digits only the library can make: here, the first mailbox's id.
    const digits = await owner.createMailbox(String(first.id));
    assert.equal((await findMailbox(cli, String(first.id))).id, first.id);
    const far = await owner.createMailbox('4000000000');
    assert.equal((await findMailbox(cli, '4000000000')).id, far.id);
    await Promise.all([first.close(), digits.close(), far.close()]);
  });

  test('a process inbox is not a mailbox, by #ID or bare number', async () => {
    await missing(
      `#${owner.inbox}`,
      new RegExp(`#${owner.inbox} is the inbox of process ${owner.id} \\('owner'\\)`),
    );
    await missing(String(owner.inbox), new RegExp(`#${owner.inbox} is the inbox of process ${owner.id}`));
    // The library's stat reaches it, and says whose it is.
    assert.equal((await cli.stat(owner.inbox)).inboxOf, owner.id);
  });

  test('names and ids that are not there', async () => {
    await missing('find-nosuch', /^no mailbox 'find-nosuch'$/);
    await missing('#0', /^no mailbox #0$/);
    await missing('#99999999999999999999', /^no mailbox #99999999999999999999$/);
    await missing('#4294967296', /^no mailbox #4294967296$/);
    await missing('123456789', /^no mailbox '123456789'$/);
    const gone = await owner.createMailbox('find-gone');
    const id = gone.id;
    await gone.delete();
    await missing(`#${id}`, new RegExp(`^no mailbox #${id}$`));
    await missing('find-gone', /^no mailbox 'find-gone'$/);
  });

  test('an unlinked name is gone, while its mailbox is still found by id', async () => {
    const mb = await owner.createMailbox('find-temp');
    await mb.unlink();
    await missing('find-temp', /^no mailbox 'find-temp'$/);
    const still = await findMailbox(cli, `#${mb.id}`);
    assert.equal(still.unlinked, true);
    // A new mailbox may take the name; the name finds it, not the unlinked one.
    const next = await owner.createMailbox('find-temp');
    assert.equal((await findMailbox(cli, 'find-temp')).id, next.id);
    await Promise.all([mb.close(), next.close()]);
  });

  test('an empty name is a usage error', async () => {
    await assert.rejects(findMailbox(cli, ''), /a mailbox name cannot be empty/);
  });
});
