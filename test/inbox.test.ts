/**
 * An inbox is its process's (api.md, inbox): only it receives, and it goes when its process
 * ends. Its rights, owner and existence cannot be changed by an open handle on it, which once
 * let a transfer or chmod hand direct messages to another process, or leave sends queuing into
 * a removed inbox nobody could read, its bytes never released.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PostboxError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';

const eperm = (e: PostboxError): boolean => e.code === 'EPERM' && /inbox/.test(e.message);

describe('inboxes', () => {
  const { join } = kernelForTests();

  test('a process is told its own id and its inbox id, which differ once mailboxes were made before it', async () => {
    const first = await join();
    await first.createMailbox();
    await first.createMailbox();
    const me = await join({ name: 'told-who' });
    assert.notEqual(me.inbox, me.id, 'mailboxes and processes are numbered apart');
    const inbox = await me.stat(me.inbox);
    assert.equal(inbox.owner, me.id);
    await first.send('told-who', 'to the inbox');
    assert.equal((await me.receive({ nowait: true }))?.sender, first.id);
    assert.equal(inbox.id, me.inbox);
  });

  test("an inbox's mode, group, owner and existence are refused with EPERM; it keeps working", async () => {
    const a = await join();
    const b = await join();
    const inbox = await a.openMailbox(a.inbox);
    await assert.rejects(inbox.chmod(0o666), eperm);
    await assert.rejects(inbox.grant(b.id), eperm);
    await assert.rejects(inbox.revoke(b.id), eperm);
    await assert.rejects(inbox.transfer(b.id), eperm);
    await assert.rejects(inbox.delete(), eperm);
    await assert.rejects(inbox.unlink(), eperm);
    const before = (await b.usage()).totalBytes;
    await b.send(a.id, 'still mine');
    const m = await a.receive({ nowait: true });
    assert.equal(m?.body, 'still mine');
    const theirs = await b.openMailbox(a.inbox);
    await assert.rejects(theirs.receive({ nowait: true }), (e: PostboxError) => e.code === 'EACCES');
    theirs.close();
    assert.equal((await b.usage()).totalBytes, before);
    inbox.close();
  });
});
