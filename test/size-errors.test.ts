/**
 * A message over the kernel's size limit is refused in the client with EMSGSIZE (USERS.md #6:
 * a clear error, never a silent drop). The error said only the sizes ("a 2048-byte message is
 * over the kernel's 1024-byte limit"), not where the message was going, though errors name the
 * mailbox or process concerned (BRIEF.md, Errors); a program sending to several could not tell
 * which send failed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PostboxError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';

describe('EMSGSIZE over the kernel limit names where the message was going', () => {
  const { join } = kernelForTests({ args: ['--max-message-size', '1024'] });

  test('a send to a mailbox, by each road through the client, names it as the kernel does', async () => {
    const p = await join();
    const box = await p.createMailbox('size-errors');
    const names = (label: string, subject: string) => (e: PostboxError) =>
      e.code === 'EMSGSIZE' &&
      e.message.includes(`to ${label}`) &&
      e.message.includes('--max-message-size') &&
      e.mailbox === subject;
    // A handle knows its mailbox's name: the error gives it, not the id the program never saw.
    const byName = names("mailbox 'size-errors'", 'size-errors');
    await assert.rejects(box.send(new Uint8Array(2048)), byName); // bytes, no options
    await assert.rejects(box.send('x'.repeat(2048)), byName); // a string, no options
    await assert.rejects(box.send({ big: 'x'.repeat(2048) }, { type: 2 }), byName); // with options
    await assert.rejects(box.sendMany(['ok', 'x'.repeat(2048)]), byName);
    // By id alone the client knows no name: the id it was given.
    const byId = names(`mailbox #${box.id}`, `#${box.id}`);
    await assert.rejects(p.sendTo(box.id, new Uint8Array(2048)), byId);
    const unnamed = await p.createMailbox();
    const unnamedById = names(`mailbox #${unnamed.id}`, `#${unnamed.id}`);
    await assert.rejects(unnamed.send(new Uint8Array(2048)), unnamedById);
    await assert.rejects(unnamed.sendMany(['x'.repeat(2048)]), unnamedById);
    assert.equal((await box.stat()).count, 0);
    assert.equal((await unnamed.stat()).count, 0);
  });

  test('a direct send to a process', async () => {
    const a = await join();
    const b = await join();
    await assert.rejects(
      a.send(b.id, new Uint8Array(2048)),
      (e: PostboxError) =>
        e.code === 'EMSGSIZE' && e.message.includes(`to process ${b.id}`) && e.process === String(b.id),
    );
  });
});
