/**
 * A Unix socket path longer than the OS takes (USERS.md #14; nodejs/node#13670). Node does not
 * refuse one: it cuts the path to fit. The kernel used to listen on the cut path, fail to chmod
 * the path it was given ("cannot listen: ENOENT … chmod"), leave the cut socket file behind and
 * keep running with nothing to do; a client looked at the cut path too and said "no kernel is
 * answering". Both now refuse such a path with ENAMETOOLONG, naming it, its length and the limit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type PostboxError } from '../src/client/mod.js';
import {
  KernelRunningError,
  SocketPathIsFolderError,
  SocketPathTakenError,
  SocketPathTooLongError,
  startKernel,
} from '../src/kernel/mod.js';
import { MAX_SOCKET_PATH_BYTES } from '../src/transport/address.js';
import { listenAsAnotherUser, WITHOUT_MODE_OVERRIDE } from './helpers/foreign-socket.js';
import { CLI } from './helpers/kernel.js';

const dir = mkdtempSync(join(tmpdir(), 'pbt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A socket path in `dir` exactly `bytes` long. */
function pathOf(bytes: number, tag: string): string {
  const head = join(dir, `${tag}-`);
  return head + 'x'.repeat(bytes - Buffer.byteLength(head));
}

/** Runs `postbox kernel --socket path`; resolves with how it exited, or kills it after 10 s. */
function runKernel(path: string): Promise<{ code: number | null; stderr: string; hung: boolean }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'kernel', '--socket', path], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    let hung = false;
    const t = setTimeout(() => {
      hung = true;
      p.kill('SIGKILL');
    }, 10_000);
    p.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, stderr, hung });
    });
  });
}

describe('socket paths over the OS limit', { skip: process.platform === 'win32' }, () => {
  test('postbox kernel refuses one at once, naming it, and leaves no file behind', async () => {
    const path = pathOf(MAX_SOCKET_PATH_BYTES + 1, 'cli');
    const r = await runKernel(path);
    assert.equal(r.hung, false, `the kernel kept running; it said: ${r.stderr}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${path} is ${MAX_SOCKET_PATH_BYTES + 1} bytes, over the`));
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('cli-')),
      [],
    );
  });

  test('startKernel() rejects with SocketPathTooLongError (ENAMETOOLONG)', async () => {
    const path = pathOf(MAX_SOCKET_PATH_BYTES + 20, 'lib');
    await assert.rejects(
      startKernel({ socket: path }),
      (e: unknown) =>
        e instanceof SocketPathTooLongError && e.code === 'ENAMETOOLONG' && e.socketPath === path,
    );
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.startsWith('lib-')),
      [],
    );
  });

  test("startKernel()'s refusals are named after their class, as Postbox's errors are", async () => {
    // They read 'Error: a kernel is already running on …' in a trace, as if nobody had named them.
    const live = join(dir, 'named.sock');
    const file = join(dir, 'named-file');
    writeFileSync(file, '');
    const k = await startKernel({ socket: live });
    try {
      const cases: [string, new (...args: never[]) => Error][] = [
        [live, KernelRunningError],
        [file, SocketPathTakenError],
        [`${dir}/`, SocketPathIsFolderError],
        [pathOf(MAX_SOCKET_PATH_BYTES + 1, 'named'), SocketPathTooLongError],
      ];
      for (const [socket, Class] of cases)
        await assert.rejects(startKernel({ socket }), (e: unknown) => {
          assert.ok(e instanceof Class, `${socket}: ${String(e)}`);
          assert.equal(e.name, Class.name);
          assert.ok(String(e).startsWith(`${Class.name}: `), String(e));
          return true;
        });
    } finally {
      await k.close();
    }
  });

  test('connect() refuses one with ENAMETOOLONG, not "no kernel is answering"', async () => {
    const path = pathOf(MAX_SOCKET_PATH_BYTES + 1, 'client');
    await assert.rejects(
      connect({ socket: path }),
      (e: PostboxError) => e.code === 'ENAMETOOLONG' && e.message.includes(path),
    );
  });

  test('a path of exactly the limit works, at that path', async () => {
    const path = pathOf(MAX_SOCKET_PATH_BYTES, 'fits');
    const k = await startKernel({ socket: path });
    try {
      assert.deepEqual(
        readdirSync(dir).filter((f) => f.startsWith('fits-')),
        [path.slice(dir.length + 1)],
      );
      const p = await connect({ socket: path });
      assert.ok(p.id > 0);
      await p.close();
    } finally {
      await k.close();
    }
  });
});

/**
 * A socket this user may not use (USERS.md #14, EACCES): connect() said "no kernel is answering
 * … Start one with `npx postbox kernel`", though a kernel may well run there (another user's) and
 * starting one would not help. It now says permission was denied, and why.
 */
test('connect() to a socket this user may not use says permission denied, not "start one"', async (t) => {
  // The socket is another user's, mode 0700, and the client runs as root without the right to
  // override file modes (setpriv drops it), as cli.test.ts does for `postbox ls`.
  if (process.getuid?.() !== 0) {
    t.skip('needs root, to give the socket to another user (uid 65534)');
    return;
  }
  const denied = join(dir, 'private.sock');
  const server = await listenAsAnotherUser(denied);
  try {
    const client = fileURLToPath(new URL('../src/client/mod.js', import.meta.url));
    const script = `import(${JSON.stringify(client)}).then((m) => m.connect({ socket: ${JSON.stringify(denied)} })).then(() => console.log('joined'), (e) => console.log(e.code + ' ' + e.message))`;
    const child = spawn('setpriv', [...WITHOUT_MODE_OVERRIDE, process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await once(child, 'close');
    clearTimeout(timer);
    assert.match(out, new RegExp(`^ECONNREFUSED permission denied on the socket ${denied} \\(EACCES\\)`));
    assert.doesNotMatch(out, /no kernel is answering|Start one/);
  } finally {
    server.close();
  }
});

/**
 * A socket path that ends with '/' names a folder: the kernel made the folder above it, then
 * failed to listen with "EACCES: permission denied", which sent the user looking at permissions.
 */
test('postbox kernel refuses a socket path ending with / at once, and makes no folder', async () => {
  const path = join(dir, 'new-folder', 'sub/');
  const r = await runKernel(path);
  assert.equal(r.hung, false, `the kernel kept running; it said: ${r.stderr}`);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /ends with '\/', so it names a folder; give the socket's own name in it, e\.g\. --socket .*sub\/kernel\.sock/,
  );
  assert.doesNotMatch(r.stderr, /EACCES|permission/);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('new-folder')),
    [],
    'no folder made',
  );
});

/**
 * A socket folder another user controls: one who may write to it can remove the kernel's socket
 * and listen in its place. A `<tmp>/postbox-<user>` that someone else made first, with mode 0777,
 * was used as it was.
 */
test('postbox kernel refuses a socket folder anyone may write to, or another user owns; a sticky one is fine', async (t) => {
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const r = await runKernel(join(open, 'k.sock'));
  assert.equal(r.hung, false, `the kernel kept running; it said: ${r.stderr}`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the socket's folder .*open may be written by any user and is not sticky/);
  assert.deepEqual(readdirSync(open), [], 'no socket made');
  // Sticky, as /tmp is: no one else may remove the kernel's socket.
  chmodSync(open, 0o1777);
  const k = await startKernel({ socket: join(open, 'k.sock') });
  await k.close();
  if (process.getuid?.() !== 0) {
    t.skip('needs root, to give the folder to another user (uid 65534)');
    return;
  }
  chmodSync(open, 0o755);
  chownSync(open, 65534, 65534);
  const theirs = await runKernel(join(open, 'k.sock'));
  assert.equal(theirs.code, 1);
  assert.match(theirs.stderr, /the socket's folder .*open belongs to another user \(uid 65534\)/);
});

/**
 * The default socket, `<tmp>/postbox-<user>/kernel.sock`, is a name anyone can guess in a folder
 * anyone can write to: another user could make the folder first, or put a socket of theirs in
 * it, and the user's processes joined whoever listened there and sent them everything. The
 * kernel refused such a folder; a client did not look.
 */
test('a client refuses the default socket when another user could have put it there (EACCES)', async (t) => {
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp);
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete env.POSTBOX_SOCKET;
  delete env.POSTBOX_URL;
  delete env.XDG_RUNTIME_DIR;
  const ls = () => runCli(['ls'], env);
  // A kernel on the default path, its folder made by the kernel: the client joins it.
  const kernel = spawn(process.execPath, [CLI, 'kernel'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const [line] = (await once(kernel.stdout!, 'data')) as [Buffer];
    const socket = /listening on unix:(.*)/.exec(String(line))![1]!;
    const folder = join(socket, '..');
    assert.equal(folder, join(tmp, `postbox-${userInfo().username}`));
    const ok = await ls();
    assert.equal(ok.code, 0, ok.stderr);
    // The folder opened to everyone, as another user who made it first would leave it.
    chmodSync(folder, 0o777);
    const open = await ls();
    assert.equal(open.code, 5, open.stderr);
    assert.match(
      open.stderr,
      /the folder .*postbox-.* may be written by any user: a kernel there may not be yours/,
    );
    chmodSync(folder, 0o700);
    if (process.getuid?.() !== 0) {
      t.skip('needs root, to give the folder and a socket to another user (uid 65534)');
      return;
    }
    chownSync(folder, 65534, 65534);
    const theirs = await ls();
    assert.equal(theirs.code, 5, theirs.stderr);
    assert.match(theirs.stderr, /the folder .* belongs to another user \(uid 65534\)/);
    chownSync(folder, process.getuid(), process.getgid?.() ?? 0);
    // Our folder, but a socket of another user's in the kernel's place.
    chownSync(socket, 65534, 65534);
    const planted = await ls();
    assert.equal(planted.code, 5, planted.stderr);
    assert.match(planted.stderr, /the socket .*kernel\.sock belongs to another user \(uid 65534\)/);
  } finally {
    kernel.kill('SIGTERM');
    await once(kernel, 'close');
  }
});

/** Runs the command line with `env`; resolves with how it exited, or kills it after 10 s. */
function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}
