/**
 * A mailbox's passkey after its create: its owner may ask for it again, and replace it, and no
 * one else is told it. Through a real kernel, each process its own connection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PostboxError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const HEX_128 = /^[0-9a-f]{32}$/;

/** An EACCES whose message matches `why`. */
function refused(why: RegExp): (e: PostboxError) => boolean {
  return (e) => {
    assert.equal(e.code, 'EACCES', e.message);
    assert.match(e.message, why);
    return true;
  };
}

describe('passkeys', () => {
  const { join } = kernelForTests();

  test('the owner is told its passkey again; a member of its group and a stranger are not', async () => {
    const owner = await join({ name: 'pk-owner' });
    const member = await join();
    const granted = await join();
    const stranger = await join();
    const mb = await owner.createMailbox('pk-ask', { passkey: true, mode: 0o660 });
    const key = mb.info.passkey!;
    assert.match(key, HEX_128);
    assert.equal(mb.info.hasPasskey, true);
    assert.equal(await mb.passkey(), key);
    // Every process learns that it has one, none but the owner what it is.
    const seen = await stranger.stat(mb.id);
    assert.equal(seen.hasPasskey, true);
    assert.equal('passkey' in seen, false);
    // A send refused says what would let it in: the passkey, not only the mode.
    await assert.rejects(
      stranger.sendTo(mb.id, 'forged'),
      refused(/lacks the send right: its group is those it was handed to, with its passkey/),
    );
    const joined = await member.openMailbox(mb.id, { passkey: key });
    await mb.grant(granted.id);
    const grantedHandle = await granted.openMailbox(mb.id);
    const strangerHandle = await stranger.openMailbox(mb.id, { role: 'none' });
    for (const h of [joined, grantedHandle, strangerHandle])
      await assert.rejects(
        h.passkey(),
        refused(/may not be told the passkey of .*only its owner, process \d+ \('pk-owner'\)/),
      );
    // Nor by the CALL itself, with no handle.
    await assert.rejects(stranger.conn.call('passkey', { name: 'pk-ask' }), { code: 'EACCES' });
    // A mailbox made without one: its owner is told it has none.
    const plain = await owner.createMailbox('pk-none');
    assert.equal(plain.info.hasPasskey, false);
    assert.equal(await plain.passkey(), null);
    // Ownership passed on, the passkey goes with it.
    await mb.transfer(member.id);
    assert.equal(await joined.passkey(), key);
    await assert.rejects(mb.passkey(), { code: 'EACCES' });
  });

  test('a renewed passkey: the old one opens nothing, those it let in keep their access, revoke puts one out', async () => {
    const owner = await join();
    const inside = await join();
    const late = await join();
    const mb = await owner.createMailbox('pk-renew', { passkey: true, mode: 0o660 });
    const old = mb.info.passkey!;
    const box = await inside.openMailbox('pk-renew', { passkey: old });
    const changed = (await mb.stat()).changeTime;
    // The kernel's clock and ours are one machine's: past the last change by ours, past it by its.
    for (let i = 0; i < 1_000_000 && Date.now() <= changed; i++) await new Promise(setImmediate);
    const fresh = await mb.renewPasskey();
    assert.match(fresh, HEX_128);
    assert.notEqual(fresh, old);
    assert.equal(await mb.passkey(), fresh);
    assert.ok((await mb.stat()).changeTime > changed, 'a renewal changes the mailbox');
    await assert.rejects(
      late.openMailbox('pk-renew', { passkey: old }),
      refused(/the passkey does not open it/),
    );
    // A passkey of another length is as wrong (compared in constant time, only once as long).
    for (const wrong of ['', fresh.slice(1), `${fresh}0`])
      await assert.rejects(late.openMailbox('pk-renew', { passkey: wrong }), refused(/does not open it/));
    // Those inside stay: the group is as it was.
    assert.deepEqual((await mb.stat()).group, [inside.id]);
    await box.send('still in');
    assert.equal((await box.receive({ nowait: true }))?.body, 'still in');
    // A member of the group may not replace it either.
    await assert.rejects(box.renewPasskey(), { code: 'EACCES' });
    assert.equal(await mb.passkey(), fresh);
    // The new one lets in.
    const newcomer = await late.openMailbox('pk-renew', { passkey: fresh });
    await newcomer.send('let in');
    // Renewed and revoked, a process that held the old passkey is out for good.
    await mb.revoke(inside.id);
    await assert.rejects(box.send('out'), { code: 'EACCES' });
    await assert.rejects(inside.openMailbox('pk-renew', { passkey: old }), { code: 'EACCES' });
  });

  test('a mailbox without a passkey gets one when renewed; an inbox gets none', async () => {
    const owner = await join();
    const other = await join();
    const mb = await owner.createMailbox('pk-later', { mode: 0o660 });
    await assert.rejects(other.openMailbox('pk-later', { passkey: 'f'.repeat(32) }), { code: 'EACCES' });
    const key = await mb.renewPasskey();
    assert.equal((await other.stat('pk-later')).hasPasskey, true);
    const h = await other.openMailbox('pk-later', { passkey: key });
    assert.deepEqual((await mb.stat()).group, [other.id]);
    await h.send('joined');
    // An inbox is its process's alone: a passkey would let others into its group.
    await assert.rejects(owner.conn.call('passkey', { id: owner.inbox, renew: true }), {
      code: 'EPERM',
      message: /inbox/,
    });
    const inbox = await owner.conn.call<{ passkey: string | null }>('passkey', { id: owner.inbox });
    assert.equal(inbox.passkey, null);
    await assert.rejects(owner.conn.call('passkey', { id: mb.id, renew: 'yes' }), {
      code: 'EINVAL',
      message: /renew must be true or false/,
    });
  });

  test('the owner presenting its own passkey stays out of the group; one let in by it leaves the group when it ends', async () => {
    const owner = await join();
    const guest = await join();
    const mb = await owner.createMailbox('pk-group', { passkey: true, mode: 0o660 });
    const key = mb.info.passkey!;
    // The owner has every right its group would give: no place in it.
    await owner.openMailbox('pk-group', { passkey: key });
    assert.deepEqual((await mb.stat()).group, []);
    const changed = (await mb.stat()).changeTime;
    for (let i = 0; i < 1_000_000 && Date.now() <= changed; i++) await new Promise(setImmediate);
    await guest.openMailbox('pk-group', { passkey: key });
    const joined = await mb.stat();
    assert.deepEqual(joined.group, [guest.id]);
    assert.ok(joined.changeTime > changed, 'its group changed, as a grant changes it');
    // Its place ends with it, as a grant's does: else stat would list it for good, and the owner
    // could not revoke it (ESRCH).
    await guest.close();
    await until(
      () => mb.stat(),
      (s) => s.group.length === 0,
      10_000,
      'the ended guest out of the group',
    );
  });

  test('an unowned mailbox with a passkey is its group’s: a member is told it and may renew it, a stranger may not', async () => {
    const creator = await join();
    const holder = await join();
    const stranger = await join();
    const mb = await creator.createMailbox('pk-unowned', { passkey: true, system: true, mode: 0o660 });
    const key = mb.info.passkey!;
    const held = await holder.openMailbox('pk-unowned', { passkey: key });
    await creator.close();
    await until(
      () => holder.stat('pk-unowned'),
      (s) => s.owner === null,
      10_000,
      'the mailbox to be unowned',
    );
    const h = await stranger.openMailbox('pk-unowned', { role: 'none' });
    await assert.rejects(h.passkey(), refused(/handed to/));
    await assert.rejects(h.renewPasskey(), refused(/handed to/));
    assert.equal(await held.passkey(), key);
    const fresh = await held.renewPasskey();
    await assert.rejects(stranger.openMailbox('pk-unowned', { passkey: key }), { code: 'EACCES' });
    await stranger.openMailbox('pk-unowned', { passkey: fresh });
    await held.delete();
  });
});
