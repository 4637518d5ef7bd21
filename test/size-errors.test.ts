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

  test('a message of exactly the limit goes, by each road through the client; one byte more does not', async () => {
    // The limits are inclusive (docs/api.md: the largest body plus user headers): the client's
    // own checks, made before anything is written, must let the largest allowed message through.
    const p = await join();
    const box = await p.createMailbox(null, { maxMessageSize: 100 });
    const big = await p.createMailbox();
    const tooBig = (e: PostboxError) => e.code === 'EMSGSIZE';
    await big.send(new Uint8Array(1024)); // bytes, no options
    await big.send('x'.repeat(1024)); // a string, no options
    await big.send(new Uint8Array(1024), { type: 2 }); // with options
    await big.send(new Uint8Array(1015), { headers: { a: 'b' } }); // 9 bytes of headers
    await big.sendMany([new Uint8Array(1024), 'y'.repeat(1024)]);
    await assert.rejects(big.send(new Uint8Array(1025)), tooBig);
    await assert.rejects(big.send(new Uint8Array(1025), { type: 2 }), tooBig);
    await assert.rejects(big.send(new Uint8Array(1016), { headers: { a: 'b' } }), tooBig);
    assert.equal((await big.stat()).count, 6);
    // A mailbox's own limit, which sendMany checks before it writes any of the batch.
    assert.deepEqual(await box.sendMany([new Uint8Array(100), 'z'.repeat(100)]), { sent: 2 });
    await assert.rejects(box.sendMany([new Uint8Array(101)]), tooBig);
    assert.equal((await box.stat()).count, 2);
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

describe('a kernel whose message size limit is over 256 MiB', () => {
  const { join } = kernelForTests({ args: ['--max-message-size', '260M'] });

  test('delivers a message that large: the receiver takes its frame, not a bad frame that ends it', {
    timeout: 120_000,
  }, async () => {
    // The client read frames of at most 256 MiB whatever the kernel allowed: the receiver died
    // with EPROTO, and the message went back to kill the next receiver the same way.
    const sender = await join();
    const receiver = await join();
    const box = await sender.createMailbox('size-large', { mode: 0o666 });
    const size = 257 * 1024 * 1024;
    const big = Buffer.alloc(size, 7);
    const got = (await receiver.openMailbox('size-large')).receive();
    await box.send(big);
    const m = await got;
    const body = m!.body as Uint8Array;
    assert.equal(body.length, size);
    assert.equal(body[0], 7);
    assert.equal(body[size - 1], 7);
  });

  test('postbox kernel refuses a limit no frame could carry', async () => {
    const { spawnSync } = await import('node:child_process');
    const cli = new URL('../src/cli/main.js', import.meta.url);
    const r = spawnSync(
      process.execPath,
      [cli.pathname, 'kernel', '--socket', '/nonexistent/k.sock', '--max-message-size', '5G'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--max-message-size is at most 4294901704 bytes/);
  });
});
