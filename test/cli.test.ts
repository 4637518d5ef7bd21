/**
 * The `postbox` command line, end to end: a real kernel, and every command run as its own OS
 * process, the way a shell runs it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  constants as fsConstants,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { pipe } from '../src/faces/pipe.js';
import { O_CREAT, O_RDWR, posix } from '../src/faces/posix.js';
import { KERNEL_VERSION } from '../src/kernel/kernel.js';
import { listenAsAnotherUser, WITHOUT_MODE_OVERRIDE } from './helpers/foreign-socket.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

let k: TestKernel;
/** A client of our own, to set things up and to watch the kernel's state. */
let me: PostboxProcess;

before(async () => {
  k = await startTestKernel({ tcp: true, args: ['--max-message-size', '65536'] });
  me = await connect({ socket: k.socket, name: 'tester' });
});

after(async () => {
  await me?.close().catch(() => {});
  await k?.stop();
});

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...k.env, ...extra };
  delete env.POSTBOX_URL;
  return env;
}

/** Runs `postbox ARGS` to completion (killed after timeoutMs), feeding it input on stdin. */
function run(
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Result> {
  return finish(
    spawnCli(args, options.env ?? cliEnv(), options.input === undefined ? 'ignore' : 'pipe', options.input),
    options.timeoutMs ?? 15_000,
    args.join(' '),
  );
}

/**
 * Runs `each` over `items`, four at a time, results in order. Dozens of commands started at once
 * on two loaded cores each took past its 15 s limit to start (a full run beside other builds);
 * four keep the cores busy, and each command's limit counts from its own start.
 */
async function fewAtATime<I, R>(items: readonly I[], each: (item: I) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await each(items[i]!);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return results;
}

/** Runs a shell command line (with $NODE and $CLI set) to completion. */
function sh(script: string, timeoutMs = 15_000): Promise<Result> {
  const p = spawn('sh', ['-c', script], {
    env: { ...cliEnv(), NODE: process.execPath, CLI },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return finish(live(p), timeoutMs, script);
}

/** A running command whose output is gathered as it comes. */
interface Live {
  proc: ChildProcess;
  out: { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnCli(
  args: string[],
  env: NodeJS.ProcessEnv = cliEnv(),
  stdin: 'ignore' | 'pipe' = 'ignore',
  input?: string,
): Live {
  const p = spawn(process.execPath, [CLI, ...args], { env, stdio: [stdin, 'pipe', 'pipe'] });
  if (input !== undefined) p.stdin!.end(input);
  return live(p);
}

function live(p: ChildProcess): Live {
  const out = { stdout: '', stderr: '' };
  p.stdout!.on('data', (d: Buffer) => {
    out.stdout += d;
  });
  p.stderr!.on('data', (d: Buffer) => {
    out.stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    p.once('close', (code, signal) => resolve({ code, signal })),
  );
  return { proc: p, out, exited };
}

async function finish(l: Live, timeoutMs: number, what: string): Promise<Result> {
  const t = setTimeout(() => l.proc.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await l.exited;
  clearTimeout(t);
  if (signal === 'SIGKILL')
    throw new Error(`'${what}' did not finish in ${timeoutMs} ms: ${JSON.stringify(l.out)}`);
  return { code, signal, ...l.out };
}

/** Waits (bounded) for a running command's output to satisfy ok. */
function outputOf(
  l: Live,
  ok: (stdout: string) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<string> {
  return until(async () => l.out.stdout, ok, timeoutMs, `${what} (stderr: ${l.out.stderr})`);
}

/** `send --json`'s lines as [line, outcome, code], in line order: they come as the sends settle. */
function sendOutcomes(stdout: string): [number, string, string | undefined][] {
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { line: number; outcome: string; code?: string })
    .sort((a, b) => a.line - b.line)
    .map((o) => [o.line, o.outcome, o.code]);
}

/** Kills a command if it is still running (cleanup after a failed assertion). */
function kill(l: Live): void {
  if (l.proc.exitCode === null && l.proc.signalCode === null) l.proc.kill('SIGKILL');
}

/**
 * Waits (bounded) until the mailbox has n waiting receivers, failing at once with the command's
 * output if the command that should be waiting has exited.
 */
async function receiversWaiting(name: string, n: number, l: Live) {
  const mb = await until(
    async () => {
      if (l.proc.exitCode !== null || l.proc.signalCode !== null)
        throw new Error(
          `the receiver exited (${l.proc.exitCode ?? l.proc.signalCode}): ${JSON.stringify(l.out)}`,
        );
      return mailboxNamed(name);
    },
    (m) => (m?.waitingReceivers.length ?? 0) >= n,
    10_000,
    `${n} receiver(s) waiting on '${name}' (output so far: ${JSON.stringify(l.out)})`,
  );
  return mb!;
}

async function mailboxNamed(name: string) {
  return (await me.mailboxes()).find((m) => m.name === name && !m.unlinked);
}

function noStack(r: Result): void {
  assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace expected:\n${r.stderr}`);
}

const commands = [
  'kernel',
  'ls',
  'stat',
  'limits',
  'ps',
  'create',
  'rm',
  'passkey',
  'chmod',
  'grant',
  'revoke',
  'send',
  'recv',
  'watch',
  'mkfifo',
  'fifo',
];

test('--help on every command: usage, examples and exit codes, without a kernel', async () => {
  const nowhere = cliEnv({ POSTBOX_SOCKET: '/nonexistent/postbox/k.sock' });
  const results = await fewAtATime(commands, (c) => run([c, '--help'], { env: nowhere }));
  for (const [i, r] of results.entries()) {
    const c = commands[i]!;
    assert.equal(r.code, 0, `${c} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: postbox ${c}\\b`), c);
    assert.match(r.stdout, /\nExamples:\n/, c);
    // Every --help ends with the exit codes, the kernel's too (it had none).
    assert.ok(r.stdout.includes('\nExit codes:\n'), c);
    for (const code of [
      /\b0 {2}ok/,
      /\b2 {2}usage/,
      /\b3 {2}empty/,
      /\b4 {2}no such/,
      /\b5 {2}permission/,
      /\b6 {2}timed out/,
    ])
      assert.match(r.stdout.slice(r.stdout.indexOf('Exit codes:')), code, c);
    if (c !== 'kernel') assert.match(r.stdout, /--socket PATH[\s\S]*--url URL/, c);
    // ps and watch say what their columns are, as cli.md does: an inbox and what loops hold too.
    if (c === 'ps' || c === 'watch') assert.match(r.stdout, /inbox[\s\S]*hold/, c);
  }
  const top = await run(['--help'], { env: nowhere });
  assert.equal(top.code, 0);
  for (const c of commands) assert.match(top.stdout, new RegExp(`\\n  ${c} +\\S`), c);
  assert.match(top.stdout, /Exit codes:/);
  const topic = await run(['help', 'recv'], { env: nowhere });
  assert.match(topic.stdout, /^Usage: postbox recv NAME/);
  // No command is a usage error: its help goes to standard error, as errors do, not into a pipe.
  const bare = await run([], { env: nowhere });
  assert.equal(bare.code, 2);
  assert.equal(bare.stdout, '');
  assert.match(bare.stderr, /^Usage: postbox <command>/);
  const short = await run(['send', '-h'], { env: nowhere });
  assert.match(short.stdout, /^Usage: postbox send NAME \[TEXT\]/); // The version the package says, which the kernel also tells each process in its WELCOME.
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  for (const flag of ['--version', '-V']) {
    const v = await run([flag], { env: nowhere });
    assert.equal(v.code, 0, v.stderr);
    assert.match(
      v.stdout,
      new RegExp(`^postbox ${version.replaceAll('.', '\\.')} \\(protocol 1, node v\\d+`),
    );
  }
  assert.equal(KERNEL_VERSION, version, 'the kernel says the version the package has');
});

test('usage errors exit 2 with a hint and no stack trace', async () => {
  const cases: [string[], RegExp][] = [
    [['nosuchcommand'], /unknown command 'nosuchcommand'/],
    // It printed the general help and exited 0, as if there were such a command.
    [['help', 'nosuchcommand'], /^postbox: unknown command 'nosuchcommand'\n/],
    // node's parseArgs said these in its own words, over up to three lines.
    [['ls', '--bogus'], /^postbox ls: unknown option --bogus\n/],
    [['ls', '--json=3'], /^postbox ls: --json takes no value\n/],
    // parseArgs read '-hello' as -h -e -l -l -o and named only -e; a text or name that starts with
    // '-' goes after --, which its message said and ours left out.
    [
      ['send', 'x', '-hello'],
      /^postbox send: unknown option -e in '-hello' \(an argument that starts with '-' goes after --, as in: -- '-hello'\)\n/,
    ],
    [['send', 'x', '-5'], /^postbox send: unknown option -5 \(.* goes after --, as in: -- '-5'\)\n/],
    [['send', 'x', '--type'], /^postbox send: --type needs a value\n/],
    [['kernel', '--heartbeat-ms'], /^postbox kernel: --heartbeat-ms needs a value\n/],
    [
      ['kernel', '--heartbeat-ms', '-5'],
      /^postbox kernel: --heartbeat-ms must be a whole number from 1 to 2147483647, not '-5'\n/,
    ],
    // A heartbeat past Node's longest timer fired every millisecond, in the kernel and its clients.
    [
      ['kernel', '--heartbeat-ms', '99999999999'],
      /^postbox kernel: --heartbeat-ms must be a whole number from 1 to 2147483647, not '99999999999'\n/,
    ],
    // Process 0 reached the library, whose refusal named its own call (`receive(): from must …`).
    [['recv', 'x', '--from', '0'], /^postbox recv: --from: 0 is no process id \(ids start at 1\)\n/],
    [['send', '--process', '0', 'hi'], /^postbox send: PROCESS: 0 is no process id \(ids start at 1\)\n/],
    // Negative, these were taken for a missing value ("needs a value").
    [['ls', '--top', '-1'], /^postbox ls: --top must be a whole number from 1 to 1000, not '-1'\n/],
    [
      ['watch', '--interval', '-5'],
      /^postbox watch: --interval must be a whole number from 10 to 3600000, not '-5'\n/,
    ],
    // Past 2^53 a number is still whole: the error says what is wrong with it.
    [
      ['create', 'x', '--capacity', '99999999999999999999'],
      /^postbox create: --capacity must be a whole number from 0 to 9007199254740991 \(2\^53 − 1\), not '99999999999999999999'\n/,
    ],
    [
      ['ls', '--socket', '-x'],
      /^postbox ls: --socket needs a value \(one that starts with '-' is written --socket=-…\)\n/,
    ],
    [['ls', '--socket', ''], /^postbox ls: --socket needs a path, not an empty string\n/],
    [['kernel', '--socket', ''], /^postbox kernel: --socket needs a path, not an empty string\n/],
    [['create', 'x', '--capacity', 'lots'], /--capacity must be a whole number/],
    // parseArgs took -1 for a missing value and said so in three lines, without the value.
    [['create', 'x', '--capacity', '-1'], /--capacity must be a whole number, 0 or more, not '-1'/],
    [['create', 'x', '--message-size', '8'], /--message-size needs --capacity N of at least 1/],
    [['create', 'x', '--mode', '0999'], /--mode must be three octal digits/],
    [['create', 'x', '--order', 'lifo'], /--order must be fifo, priority/],
    [['create', '42'], /only digits/],
    [['recv', 'x', '--all', '--follow'], /one of --count, --all and --follow/],
    [['recv', 'x', '--except'], /--except needs --type/],
    [['recv', 'x', '--count', '0'], /--count must be a positive whole number/],
    [['send'], /missing NAME/],
    [['send', 'x', 'a', 'b'], /unexpected argument 'b'/],
    [['send', 'x', '--priority', '40000'], /--priority must be a whole number from 0 to 32767/],
    [['fifo', 'peek', 'x'], /'read' or 'write'/],
    [['watch', '--interval', 'soon'], /--interval/],
    [['ls', '--socket', '/a', '--url', 'tcp://127.0.0.1:1'], /--socket or --url, not both/],
    // Each bound and each pair of options that cannot go together, at its edge.
    [
      ['send', 'x', 'a', '--priority', '32768'],
      /--priority must be a whole number from 0 to 32767, not '32768'/,
    ],
    [['send', 'x', 'a', '--type', '0'], /--type must be a positive whole number, not '0'/],
    [['send', 'x', 'a', '--typed'], /--typed reads standard input; give no TEXT with it/],
    [['send', 'x', '--typed', '--type', '2'], /--typed takes each type from its line; drop --type/],
    [['send', 'x', 'a', '--nowait', '--timeout', '5'], /give --nowait or --timeout, not both/],
    [['recv', 'x', '--nowait', '--timeout', '5'], /give --nowait or --timeout, not both/],
    [['recv', 'x', '--follow', '--nowait'], /--follow waits for messages as they come/],
    [['recv', 'x', '--all', '--timeout', '5'], /--all takes what is queued without waiting; drop --timeout/],
    [['recv', 'x', '--count', '2', '--all'], /one of --count, --all and --follow/],
    [['create', '#x'], /a mailbox name cannot start with '#'/],
    [
      ['create', 'x', '--capacity', '0', '--message-size', '8'],
      /--message-size needs --capacity N of at least 1/,
    ],
    [['create', 'x', '--max-size', '0'], /--max-size must be a positive number of bytes/],
    [['create', 'x', '--key', '0x100000000'], /--key must be a number from 1 to 0xffffffff/],
    [['create', 'x', '--key', '0'], /--key must be a whole number from 1 to 4294967295/],
    [['mkfifo', '#x'], /a FIFO name cannot start with '#'/],
    [['fifo', 'read', 'x', '--chunks'], /--chunks is for fifo write/],
    [['watch', '--interval', '9'], /--interval must be a whole number from 10 to 3600000, not '9'/],
  ];
  const results = await fewAtATime(cases, ([args]) => run(args));
  for (const [i, r] of results.entries()) {
    const [args, message] = cases[i]!;
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.match(r.stderr, /Run 'postbox( \w+)? --help' for usage/, args.join(' '));
    // Every error line names the command it comes from (none yet for an unknown command).
    const prefix = ['nosuchcommand', 'help'].includes(args[0]!) ? 'postbox: ' : `postbox ${args[0]}: `;
    assert.ok(r.stderr.startsWith(prefix), `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /postbox \w+:? postbox/, args.join(' '));
    // One line of message, then the hint: nothing of node's own wording.
    assert.equal(r.stderr.split('\n').length, 3, `${args.join(' ')}: ${r.stderr}`);
    noStack(r);
  }
  // An argument only the kernel can judge is a usage error too (EINVAL), with the same hint.
  const big = await run(['create', 'toolarge', '--max-size', '1M']);
  assert.equal(big.code, 2, big.stderr);
  assert.match(
    big.stderr,
    /--max-size 1048576 is over the kernel's limit of 65536 \(EINVAL\)\nRun 'postbox create --help' for usage\.\n$/,
  );
  const tab = await run(['create', 'a\tb']);
  assert.equal(tab.code, 2, tab.stderr);
  assert.match(
    tab.stderr,
    /^postbox create: .*control characters.*\(EINVAL\)\nRun 'postbox create --help' for usage\.\n$/,
  );
  // A name too long is the same kind of mistake: exit 2 with the hint (docs/cli.md says so).
  const long = await run(['create', 'n'.repeat(1025)]);
  assert.equal(long.code, 2, long.stderr);
  assert.match(
    long.stderr,
    /^postbox create: a mailbox name is at most 1024 characters, not 1025 \(ENAMETOOLONG\)\nRun 'postbox create --help' for usage\.\n$/,
  );
  // What the user typed is quoted in errors: its escape sequences (C0, DEL, C1) are shown, not run.
  for (const args of [
    ['create', 'c1\u009b31mred'],
    ['stat', 'x\u001b[2Jy\u007f'],
    ['ls', '--\u001b]0;t\u0007'],
  ]) {
    const r = await run(args);
    assert.ok(r.code === 2 || r.code === 4, `${args.join(' ')}: ${r.code} ${r.stderr}`);
    const controls = [...r.stderr].filter((c) => {
      const code = c.charCodeAt(0);
      return (code < 0x20 && c !== '\n') || (code >= 0x7f && code <= 0x9f);
    });
    assert.deepEqual(controls, [], JSON.stringify(r.stderr));
    assert.match(r.stderr, /\\u(009b|001b)/);
  }
});

test('a number flag given something else names the flag and the value in one line, and nothing is sent', async () => {
  assert.equal((await run(['create', 'numbers'])).code, 0);
  const cases: [string[], string][] = [
    [['send', 'numbers', 'hi', '--type', 'abc'], "--type must be a positive whole number, not 'abc'"],
    [
      ['send', 'numbers', 'hi', '--priority', 'x'],
      "--priority must be a whole number from 0 to 32767, not 'x'",
    ],
    [
      ['send', 'numbers', 'hi', '--timeout', 'x'],
      "--timeout must be a whole number from 0 to 4294967295, not 'x'",
    ],
    [['send', 'numbers', '--type', 'abc'], "--type must be a positive whole number, not 'abc'"],
    // recv --type has no lower bound: the words must not show one.
    [['recv', 'numbers', '--type', 'abc'], "--type must be a whole number, not 'abc'"],
    [['recv', 'numbers', '--count', 'x'], "--count must be a positive whole number, not 'x'"],
    [['recv', 'numbers', '--timeout', 'x'], "--timeout must be a whole number from 0 to 4294967295, not 'x'"],
    // A value led by a dash is the flag's value, not node's three-line 'ambiguous' refusal.
    [['recv', 'numbers', '--type', '-x'], "--type must be a whole number, not '-x'"],
    [
      ['send', 'numbers', 'hi', '--priority', '-v'],
      "--priority must be a whole number from 0 to 32767, not '-v'",
    ],
  ];
  const results = await fewAtATime(cases, ([args]) => run(args, { input: 'from stdin\n' }));
  for (const [i, r] of results.entries()) {
    const [args, message] = cases[i]!;
    const command = args[0]!;
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(
      r.stderr,
      `postbox ${command}: ${message}\nRun 'postbox ${command} --help' for usage.\n`,
      args.join(' '),
    );
  }
  const mb = await mailboxNamed('numbers');
  assert.equal(mb?.sent, 0, 'nothing was sent');
});

test('ls --top N: the N busiest mailboxes, busiest first, as the kernel ranks them; --json their stats', async () => {
  // More messages than any other test leaves anywhere, so these two are the busiest.
  for (const [name, count] of [
    ['top-second', 600],
    ['top-first', 700],
  ] as const) {
    assert.equal((await run(['create', name])).code, 0);
    const sent = await run(['send', name], { input: 'm\n'.repeat(count) });
    assert.equal(sent.code, 0, sent.stderr);
  }
  const table = await run(['ls', '--top', '2']);
  assert.equal(table.code, 0, table.stderr);
  const [header, ...rows] = table.stdout.trimEnd().split('\n');
  assert.match(header!, /^KEY +ID +NAME +OWNER/);
  assert.deepEqual(
    rows.map((r) => r.split(/ +/)[2]),
    ['top-first', 'top-second'],
    table.stdout,
  );
  assert.match(rows[0]!, / 700 +0 +0$/);
  const json = await run(['ls', '--top', '1', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const stats = JSON.parse(json.stdout) as { name: string; count: number }[];
  assert.deepEqual(
    stats.map((m) => [m.name, m.count]),
    [['top-first', 700]],
  );
  for (const bad of ['0', '1001', 'x'])
    assert.match(
      (await run(['ls', '--top', bad])).stderr,
      new RegExp(`^postbox ls: --top must be a whole number from 1 to 1000, not '${bad}'\n`),
    );
  await run(['rm', 'top-first']);
  await run(['rm', 'top-second']);
});

test('every number option takes the values at its bounds', async () => {
  // The refusals above are at the edges; these are just inside them, and must work.
  const made = await run(['create', 'edges', '--key', '0xffffffff', '--capacity', '0', '--max-size', '1']);
  assert.equal(made.code, 0, made.stderr);
  assert.equal((await mailboxNamed('edges'))?.key, 0xffffffff);
  await run(['rm', 'edges']);
  assert.equal((await run(['create', 'edge-key', '--key', '1'])).code, 0);
  await run(['rm', 'edge-key']);
  assert.equal((await run(['create', 'top'])).code, 0);
  const top = await run(['send', 'top', 'highest', '--priority', '32767', '--type', '1', '--json']);
  assert.equal(top.code, 0, top.stderr);
  const got = JSON.parse((await run(['recv', 'top', '--json', '--count', '1'])).stdout) as {
    priority: number;
  };
  assert.equal(got.priority, 32767);
  const watch = await run(['watch', '--once', '--interval', '10']);
  assert.equal(watch.code, 0, watch.stderr);
  await run(['rm', 'top']);
});

test('"kernel not running" says how to start one', async () => {
  const socket = '/nonexistent/postbox/k.sock';
  const r = await run(['ls'], { env: cliEnv({ POSTBOX_SOCKET: socket }) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the kernel is not running: nothing answers at \/nonexistent\/postbox\/k\.sock/);
  assert.match(r.stderr, /postbox kernel --socket \/nonexistent\/postbox\/k\.sock/);
  assert.match(r.stderr, /npm start/);
  noStack(r);
  const tcp = await run(['recv', 'x', '--url', 'tcp://127.0.0.1:1']);
  assert.equal(tcp.code, 1);
  assert.match(tcp.stderr, /no kernel is answering at tcp:\/\/127\.0\.0\.1:1[\s\S]*postbox kernel --listen/);
  // Nothing took the connection, so no token was looked at: asking about it sent users the wrong way.
  assert.doesNotMatch(tcp.stderr, /TOKEN/, tcp.stderr);
  // The code is named once (it was printed twice: '(ECONNREFUSED). (ECONNREFUSED)').
  assert.equal(tcp.stderr.match(/\(ECONNREFUSED\)/g)?.length, 1, tcp.stderr);
  noStack(tcp);
});

test('nothing answering at a file or a stale socket names the code; a socket this user may not use is EACCES (exit 5)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-cli-'));
  try {
    // A regular file where the socket should be, and a socket whose kernel was killed (the
    // file stays behind): both refuse the connection, and the message said so without a code.
    const file = join(dir, 'regular');
    writeFileSync(file, '');
    const stale = join(dir, 'stale.sock');
    const killed = spawn(
      process.execPath,
      [
        '-e',
        `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ],
      { stdio: 'ignore' },
    );
    await once(killed, 'exit');
    assert.ok(existsSync(stale), 'the killed listener left its socket file');
    for (const path of [file, stale]) {
      const r = await run(['ls', '--socket', path]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(
        r.stderr.split('\n')[0],
        `postbox ls: the kernel is not running: nothing answers at ${path} (ECONNREFUSED).`,
      );
      assert.equal(r.stderr.match(/\(E[A-Z]+\)/g)?.length, 1, r.stderr);
      noStack(r);
    }

    // Permission denied on the socket: starting a kernel would not help, so it is not advised.
    // The socket is another user's, mode 0700, and the command runs as root without the right
    // to override file modes (setpriv drops it): it reads this checkout wherever it lies, as a
    // command run as another user might not.
    if (process.getuid?.() !== 0) {
      t.skip('the EACCES case needs root, to give the socket to another user (uid 65534)');
      return;
    }
    const denied = join(dir, 'private.sock');
    const server = await listenAsAnotherUser(denied);
    try {
      const l = live(
        spawn('setpriv', [...WITHOUT_MODE_OVERRIDE, process.execPath, CLI, 'ls', '--socket', denied], {
          env: cliEnv(),
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      const r = await finish(l, 15_000, 'ls without the right to override modes');
      assert.equal(r.code, 5, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^postbox ls: permission denied on the socket ${denied} \\(EACCES\\)`),
      );
      assert.doesNotMatch(r.stderr, /not running|Start it/);
      assert.equal(r.stderr.match(/\(EACCES\)/g)?.length, 1, r.stderr);
      noStack(r);
    } finally {
      server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('recv writes structured bodies as JSON: Map, Set, Date, bigint, typed arrays, cycles', async () => {
  // A Map and a Set came out as {}, a nested one in inspect's notation, a cycle as inspect's.
  const box = await me.createMailbox('structured', { mode: 0o666 });
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;
  const when = new Date(Date.UTC(2026, 10, 22, 12, 0, 0));
  const bodies = [
    new Map<unknown, unknown>([
      ['k', 'v'],
      ['n', 10n],
    ]),
    new Map<unknown, unknown>([[1, 2]]),
    new Set([1, 2, 3]),
    { when, m: new Map([['x', 1]]), f: new Float64Array([1.5, 2.5]) },
    cyclic,
    undefined,
  ];
  for (const b of bodies) await box.send(b as never, { codec: 'msgpack' });
  const text = await run(['recv', 'structured', '--count', '2']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, '{"k":"v","n":"10"}\n[[1,2]]\n');
  const json = await run(['recv', 'structured', '--all', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(
    json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).body),
    [
      [1, 2, 3],
      { when: when.toISOString(), m: { x: 1 }, f: [1.5, 2.5] },
      { name: 'loop', self: '[Circular]' },
      null, // undefined: the field is there, as null (it was left out, and .body was missing)
    ],
  );
  await box.send(undefined as never, { codec: 'msgpack' });
  assert.equal((await run(['recv', 'structured'])).stdout, 'null\n', 'not "undefined", which is no JSON');
  await box.delete(); // the tester owns nothing, as later tests expect
});

test('recv whose standard output has gone puts the message back instead of losing it', async () => {
  // It took the message, failed to write it, and exited 0: the message was nowhere. (A closed
  // descriptor, `>&-`, is another case: Node opens /dev/null in its place, as for `>/dev/null`.)
  const box = await me.createMailbox('gone-out', { mode: 0o666 });
  await box.send({ kept: new Map([['as', 'sent']]) } as never, { codec: 'msgpack', type: 7 });
  await box.send('second');
  const child = spawn(process.execPath, [CLI, 'recv', 'gone-out', '--all'], {
    env: cliEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The reading end is gone before the command can write: its first write fails (EPIPE).
  child.stdout!.destroy();
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, stderr);
  const st = await box.stat();
  assert.equal(st.count, 2, 'nothing lost');
  const back = [await box.receive(), await box.receive()];
  assert.deepEqual(
    back.map((m) => [m?.body, m?.type, m?.codec]),
    [
      ['second', 1, 'string'],
      [{ kept: new Map([['as', 'sent']]) }, 7, 'msgpack'],
    ],
    'the one put back is last, as it came otherwise',
  );
  await box.delete(); // the tester owns nothing, as later tests expect
});

test('create, ls, stat and rm round trip, with --json', async () => {
  const made = await run([
    'create',
    'jobs',
    '--capacity',
    '10',
    '--order',
    'priority',
    '--mode',
    '0662',
    '--key',
    '0x1234',
    '--max-size',
    '8K',
    '--json',
  ]);
  assert.equal(made.code, 0, made.stderr);
  const info = JSON.parse(made.stdout) as Record<string, unknown>;
  assert.equal(info.name, 'jobs');
  assert.equal(info.capacity, 10);
  assert.equal(info.order, 'priority');
  assert.equal(info.mode, 0o662);
  assert.equal(info.key, 0x1234);
  assert.equal(info.maxMessageSize, 8192);
  assert.equal(info.system, true, 'a mailbox made from the command line is system-owned');
  assert.equal(info.owner, null, 'its owner was the command, which has ended');
  const id = info.id as number;

  const again = await run(['create', 'jobs']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /mailbox 'jobs' exists .*\(EEXIST\)/);

  // It outlived the command that made it; its owner is gone, so it is unowned.
  const ls = await run(['ls', '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  const listed = (
    JSON.parse(ls.stdout) as { id: number; name: string; owner: number | null; system: boolean }[]
  ).find((m) => m.name === 'jobs');
  assert.ok(listed, ls.stdout);
  assert.equal(listed.id, id);
  assert.equal(listed.owner, null);
  assert.equal(listed.system, true);

  const table = await run(['ls']);
  assert.equal(table.code, 0);
  const [header, ...lines] = table.stdout.trimEnd().split('\n');
  assert.match(header!, /^KEY +ID +NAME +OWNER +MODE +USED-BYTES +MESSAGES +SENDERS +RECEIVERS$/);
  const row = lines.find((l) => / jobs /.test(l));
  assert.ok(row, table.stdout);
  assert.match(row, /^0x00001234 +\d+ +jobs +- +0662 +0 +0\/10 +0 +0$/);
  // Columns are aligned: every row's MODE starts where the header's does.
  const at = header!.indexOf('MODE');
  for (const l of lines) assert.match(l.slice(at), /^0[0-7]{3} /, l);

  await run(['send', 'jobs', 'hello', '--priority', '3']);
  const stat = await run(['stat', 'jobs', '--json']);
  assert.equal(stat.code, 0, stat.stderr);
  const s = JSON.parse(stat.stdout) as Record<string, number>;
  assert.equal(s.count, 1);
  assert.equal(s.bytes, 5);
  assert.equal(s.capacity, 10);
  assert.ok(s.lastSendTime! > 0 && s.lastSendProcess! > 0 && s.createTime! > 0);
  assert.equal(s.lastReceiveTime, 0);
  // A library may name a mailbox with digits; a bare number is still the id, as `#ID` is.
  const lib = await connect({ socket: k.socket });
  const digits = await lib.createMailbox(String(id), { mode: 0o666 });
  for (const ref of [`#${id}`, String(id)]) {
    const byId = await run(['stat', ref, '--json']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.equal((JSON.parse(byId.stdout) as { id: number }).id, id);
  }
  assert.notEqual(digits.id, id);
  await lib.close();
  const human = await run(['stat', 'jobs']);
  assert.equal(human.code, 0);
  assert.match(human.stdout, new RegExp(`^mailbox 'jobs' \\(#${id}\\)\\n`));
  for (const field of [
    /key +0x00001234/,
    /mode +0662/,
    /messages +1 \(1 queued/,
    /capacity +10 messages/,
    /max message size +8,192 bytes/,
    /order +priority/,
    // The command that sent it has ended: stat says so beside its OS pid.
    /last send +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d .* by process \d+ \(OS pid \d+, since terminated\)\n/,
    /last receive +never/,
    /created +\d{4}-/,
    /bytes +5 of [\d,]+ \(msg_qbytes\)/,
  ])
    assert.match(human.stdout, field);
  assert.equal((await run(['create', 'loose'])).code, 0);
  const loose = await run(['stat', 'loose']);
  assert.match(loose.stdout, /bytes +0 \(no limit of its own; all mailboxes together: [\d,]+\)\n/);
  await run(['rm', 'loose']);
  // msg_qbytes 0, as the library and the System V face allow it: a mailbox that holds nothing.
  const zero = await run(['create', 'zero-bytes', '--capacity', '10', '--max-bytes', '0', '--json']);
  assert.equal(zero.code, 0, zero.stderr);
  assert.equal((JSON.parse(zero.stdout) as { maxBytes: number }).maxBytes, 0);
  await run(['rm', 'zero-bytes']);

  const rm = await run(['rm', 'jobs']);
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal(await mailboxNamed('jobs'), undefined);
  const gone = await run(['stat', 'jobs']);
  assert.equal(gone.code, 4);
  assert.match(gone.stderr, /no mailbox 'jobs' \(ENOENT\)/);
  const twice = await run(['rm', 'jobs', '--json']);
  assert.equal(twice.code, 4);
  assert.deepEqual(JSON.parse(twice.stdout), [
    { ref: 'jobs', error: 'ENOENT', message: "no mailbox 'jobs'" },
  ]);
});

test('send reads standard input one message per line; recv --all gives them back in order', async () => {
  assert.equal((await run(['create', 'lines'])).code, 0);
  const input = 'first line\nsecond\n\n  indented\tand tabbed\nlast without newline';
  const sent = await run(['send', 'lines'], { input });
  assert.equal(sent.code, 0, sent.stderr);
  assert.equal(sent.stdout, '');
  assert.equal((await mailboxNamed('lines'))?.count, 5);
  const got = await run(['recv', 'lines', '--all']);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, `${input}\n`);
  // --all on an empty mailbox: nothing, and still exit 0.
  const none = await run(['recv', 'lines', '--all']);
  assert.equal(none.code, 0);
  assert.equal(none.stdout, '');

  // Many lines: pipelined sends, batched receives, order kept.
  const many = Array.from({ length: 5000 }, (_, i) => `m${i}`);
  const bulk = await run(['send', 'lines', '--json'], { input: `${many.join('\n')}\n` });
  assert.equal(bulk.code, 0, bulk.stderr);
  const results = bulk.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { line: number; outcome: string });
  assert.equal(results.length, 5000);
  assert.ok(results.every((r) => r.outcome === 'queued'));
  // A message that fails has its line too (it had none: a script matching lines lost count).
  const full = await me.createMailbox('json-full', { capacity: 1, mode: 0o666 });
  const over = await run(['send', 'json-full', '--json', '--nowait'], { input: 'fits\nover\n' });
  assert.equal(over.code, 3);
  assert.deepEqual(
    over.stdout
      .trimEnd()
      .split('\n')
      .map((l) => {
        const o = JSON.parse(l) as { line: number; outcome: string; code?: string };
        return [o.line, o.outcome, o.code];
      })
      .sort((a, b) => (a[0] as number) - (b[0] as number)), // in the order they settle
    [
      [1, 'queued', undefined],
      [2, 'failed', 'EAGAIN'],
    ],
  );
  await full.delete();
  const two = await run(['recv', 'lines', '--count', '2']);
  assert.equal(two.stdout, 'm0\nm1\n');
  const rest = await run(['recv', 'lines', '--all']);
  assert.deepEqual(rest.stdout.trimEnd().split('\n'), many.slice(2));

  const json = await run(['send', 'lines', 'héllo', '--type', '7']);
  assert.equal(json.code, 0);
  const one = await run(['recv', 'lines', '--json']);
  const m = JSON.parse(one.stdout) as Record<string, unknown>;
  assert.equal(m.body, 'héllo');
  assert.equal(m.type, 7);
  assert.equal(m.size, 6);
  assert.equal(m.codec, 'string');
  await run(['rm', 'lines']);
});

test("--typed input and msgrcv selection: the lecture's crew", async () => {
  const made = await run(['create', 'crew']);
  assert.equal(made.code, 0, made.stderr);
  // cli.md's transcript shows this line (with the id its kernel gave).
  assert.match(made.stdout, /^created mailbox 'crew' \(#\d+\): unbounded, fifo, first, mode 0666\n$/);
  const crew: [number, string][] = [
    [1, 'Kirk'],
    [2, 'Spock'],
    [3, 'McCoy'],
    [4, 'Scott'],
    [5, 'Uhura'],
    [6, 'Sulu'],
    [2, 'Chekov'],
    [3, 'Chapel'],
    [2, 'Rand'],
    [1, 'Riley'],
  ];
  const sent = await run(['send', 'crew', '--typed'], {
    input: crew.map(([t, n]) => `${t} ${n}\n`).join(''),
  });
  assert.equal(sent.code, 0, sent.stderr);
  // msgrcv(type 2, IPC_NOWAIT) until it fails with ENOMSG/EAGAIN.
  const twos: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await run(['recv', 'crew', '--type', '2', '--nowait']);
    if (r.code === 3) {
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /no message in mailbox 'crew' of type 2/);
      break;
    }
    assert.equal(r.code, 0, r.stderr);
    twos.push(r.stdout.trimEnd());
  }
  assert.deepEqual(twos, ['Spock', 'Chekov', 'Rand']);
  // Then type 0: the rest in order of arrival.
  const rest = await run(['recv', 'crew', '--all', '--verbose']);
  assert.equal(rest.code, 0);
  const lines = rest.stdout.trimEnd().split('\n');
  assert.deepEqual(
    lines.map((l) => l.split('\t')[1]),
    ['Kirk', 'McCoy', 'Scott', 'Uhura', 'Sulu', 'Chapel', 'Riley'],
  );
  assert.match(lines[0]!, /^seq=1 type=1 priority=0 sender=\d+\tKirk$/);
  assert.match(lines[1]!, /^seq=3 type=3 /);

  // Negative types and MSG_EXCEPT.
  await run(['send', 'crew', '--typed'], { input: '3 c\n1 a\n2 b\n\n' });
  const lowest = await run(['recv', 'crew', '--type', '-2', '--nowait']);
  assert.equal(lowest.stdout, 'a\n');
  const except = await run(['recv', 'crew', '--type', '3', '--except', '--nowait']);
  assert.equal(except.stdout, 'b\n');
  assert.equal((await run(['recv', 'crew', '--all'])).stdout, 'c\n');

  // A malformed line stops the input: exit 2, naming the line.
  // Blank lines are skipped but counted: the line named is the input's (it said line 2 here).
  const bad = await run(['send', 'crew', '--typed'], { input: '1 ok\n\n  \nnot-a-type here\n1 never\n' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /line 4: expected 'TYPE TEXT'/);
  assert.equal((await run(['recv', 'crew', '--all'])).stdout, 'ok\n');
  // Type 0 is no type a message can have: the line is refused before it is sent, as is every
  // line after it, though they were read in the same chunk.
  const zero = await run(['send', 'crew', '--typed'], { input: '1 ok\n0 zero\n1 never\n' });
  assert.equal(zero.code, 2, zero.stderr);
  assert.match(
    zero.stderr,
    /^postbox send: line 2: expected 'TYPE TEXT' with a positive whole TYPE, got '0 zero'\n/,
  );
  assert.equal((await run(['recv', 'crew', '--all'])).stdout, 'ok\n');
  await run(['rm', 'crew']);
});

test('send --typed --json: a malformed line gets its own failed line, and the input stops there', async () => {
  assert.equal((await run(['create', 'typed-json'])).code, 0);
  const r = await run(['send', 'typed-json', '--typed', '--json'], {
    input: '1 ok\nnot-a-type here\n1 never\n',
  });
  assert.equal(r.code, 2, r.stderr);
  noStack(r);
  assert.match(r.stderr, /line 2: expected 'TYPE TEXT'/);
  const outcomes = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { line: number });
  // A script matches lines to outcomes: every line read has one, and the line never sent has none.
  assert.deepEqual(
    outcomes.sort((a, b) => a.line - b.line),
    [
      { line: 1, outcome: 'queued' },
      {
        line: 2,
        outcome: 'failed',
        code: 'EINVAL',
        error: "expected 'TYPE TEXT' with a positive whole TYPE, got 'not-a-type here'",
      },
    ],
  );
  assert.equal((await run(['recv', 'typed-json', '--all'])).stdout, 'ok\n');
  await run(['rm', 'typed-json']);
});

test('exit codes: 3 empty or full, 4 no such mailbox, 5 permission denied, 6 timeout', async () => {
  assert.equal((await run(['create', 'full', '--capacity', '1'])).code, 0);
  assert.equal((await run(['send', 'full', 'a'])).code, 0);

  const wouldBlock = await run(['send', 'full', 'b', '--nowait']);
  assert.equal(wouldBlock.code, 3, wouldBlock.stderr);
  assert.match(wouldBlock.stderr, /mailbox 'full' is full .*\(EAGAIN\)/);
  const timedOutSend = await run(['send', 'full', 'b', '--timeout', '100']);
  assert.equal(timedOutSend.code, 6, timedOutSend.stderr);
  assert.match(timedOutSend.stderr, /timed out \(ETIMEDOUT\)/);
  // The piped form stops at the first failure and reports its line.
  const piped = await run(['send', 'full', '--nowait'], { input: 'x\ny\n' });
  assert.equal(piped.code, 3);
  assert.match(piped.stderr, /^postbox send: line 1: .*\(EAGAIN\)$/m);
  assert.equal((await run(['recv', 'full'])).stdout, 'a\n');

  const empty = await run(['recv', 'full', '--nowait']);
  assert.equal(empty.code, 3);
  assert.equal(empty.stderr, "postbox recv: no message in mailbox 'full'\n");
  assert.equal((await run(['send', 'full', 'c'])).code, 0);
  const fewer = await run(['recv', 'full', '--nowait', '--count', '2']);
  assert.equal(fewer.code, 3);
  assert.equal(fewer.stdout, 'c\n', 'what there was is printed');
  assert.equal(fewer.stderr, "postbox recv: only 1 of 2 messages were in mailbox 'full'\n");
  const timedOut = await run(['recv', 'full', '--timeout', '100']);
  assert.equal(timedOut.code, 6);
  assert.equal(timedOut.stderr, "postbox recv: receive from mailbox 'full' timed out (ETIMEDOUT)\n");

  for (const args of [
    ['recv', 'nosuch'],
    ['send', 'nosuch', 'x'],
    ['stat', '#999999'],
    ['rm', 'nosuch'],
  ]) {
    const r = await run(args);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^postbox ${args[0]}: no mailbox .*\\(ENOENT\\)\n$`));
    noStack(r);
  }
  // A process's inbox is not a mailbox of the command line's; the error says whose it is.
  for (const ref of [`#${me.inbox}`, String(me.inbox)]) {
    const inbox = await run(['send', ref, 'x']);
    assert.equal(inbox.code, 4, inbox.stderr);
    assert.match(
      inbox.stderr,
      new RegExp(`#${me.inbox} is the inbox of process ${me.id} \\('tester'\\), not a mailbox.*\\(ENOENT\\)`),
    );
  }
  const noProcess = await run(['recv', 'full', '--from', 'nobody-by-that-name', '--nowait']);
  assert.equal(noProcess.code, 4);
  assert.match(noProcess.stderr, /\(ESRCH\)/);

  // A process-owned mailbox of mode 0662: others may send, not receive, and not remove it.
  const priv = await me.createMailbox('private', { mode: 0o662 });
  try {
    const send = await run(['send', 'private', 'hi']);
    assert.equal(send.code, 0, send.stderr);
    const recv = await run(['recv', 'private', '--nowait']);
    assert.equal(recv.code, 5, recv.stderr);
    assert.match(recv.stderr, /\(EACCES\)/);
    const rm = await run(['rm', 'private']);
    assert.equal(rm.code, 5);
    assert.match(rm.stderr, /only its owner, process \d+ \('tester'\), may \(EACCES\)/);
    noStack(rm);
    // With several names each is tried, and the exit code is the first failure's.
    const both = await run(['rm', 'nosuch', 'private']);
    assert.equal(both.code, 4, both.stderr);
    assert.match(both.stderr, /\(ENOENT\)\n.*\(EACCES\)\n$/);
    assert.equal((await run(['rm', 'private', 'nosuch'])).code, 5);
  } finally {
    await priv.delete();
  }
  await run(['rm', 'full']);
});

test('exit codes: 4 when the mailbox is removed under a waiting recv (EIDRM), 5 when another process holds the right (EBUSY)', async () => {
  assert.equal((await run(['create', 'doomed'])).code, 0);
  const waiting = spawnCli(['recv', 'doomed']);
  try {
    await receiversWaiting('doomed', 1, waiting);
    assert.equal((await run(['rm', 'doomed'])).code, 0);
    const r = await finish(waiting, 10_000, 'recv of a removed mailbox');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /\(EIDRM\)\n$/);
    noStack(r);
  } finally {
    kill(waiting);
  }
  // An exclusive mailbox: the first process to receive holds the receive right.
  const solo = await me.createMailbox('solo', { policy: 'exclusive', mode: 0o666 });
  try {
    assert.equal(await solo.receive({ nowait: true }), null);
    const r = await run(['recv', 'solo', '--nowait']);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /\(EBUSY\)\n$/);
  } finally {
    await solo.delete();
  }
});

test('cat-style pipes through a real shell: printf | postbox send; postbox recv --all | grep', async () => {
  assert.equal((await run(['create', 'code'])).code, 0);
  const r = await sh(
    `printf 'a\\nfactorial\\nb\\n' | "$NODE" "$CLI" send code && "$NODE" "$CLI" recv code --all | grep factorial`,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'factorial\n');
  assert.equal((await mailboxNamed('code'))?.count, 0, 'recv --all took everything');
  // A reader that goes away early (head) stops recv quietly.
  await sh(`seq 1 2000 | "$NODE" "$CLI" send code`);
  const head = await sh(`"$NODE" "$CLI" recv code --follow | head -n 2`);
  assert.equal(head.code, 0, head.stderr);
  assert.equal(head.stdout, '1\n2\n');
  await run(['rm', 'code']);
});

test('ps and watch say what a blocked receive selects: msgrcv by type, MSG_EXCEPT, one sender', async () => {
  assert.equal((await run(['create', 'by-type'])).code, 0);
  // A message of type 1 is queued, so these receivers wait beside it: only what they select explains why.
  assert.equal((await run(['send', 'by-type', 'Kirk', '--type', '1'])).code, 0);
  const waiters = [
    { args: ['--type', '2'], says: "receive mailbox 'by-type' of type 2" },
    { args: ['--type', '1', '--except'], says: "receive mailbox 'by-type' not of type 1" },
    {
      args: ['--type', '-3', '--from', 'tester'],
      says: `receive mailbox 'by-type' of type <= 3 from process ${me.id}`,
    },
  ];
  const live = waiters.map((w) => spawnCli(['recv', 'by-type', ...w.args]));
  try {
    for (let i = 0; i < live.length; i++) await receiversWaiting('by-type', i + 1, live[i]!);
    const ps = await run(['ps', '--json']);
    const rows = JSON.parse(ps.stdout) as { pid: number; blockedOn: string[] }[];
    for (const [i, w] of waiters.entries())
      assert.deepEqual(rows.find((p) => p.pid === live[i]!.proc.pid)?.blockedOn, [w.says]);
    const watch = await run(['watch', '--once']);
    for (const w of waiters) assert.ok(watch.stdout.includes(`${w.says}\n`), watch.stdout);
  } finally {
    for (const l of live) kill(l);
    await Promise.all(live.map((l) => l.exited));
    await run(['rm', 'by-type']);
  }
});

test('ps and watch name the first three mailboxes a process owns and count the rest; ps --json lists the first 100 and counts them all', async () => {
  const owner = await connect({ socket: k.socket, name: 'cli-owner' });
  try {
    const names = Array.from({ length: 500 }, (_, i) => `cli-owned-${i}`);
    await Promise.all(names.map((n) => owner.createMailbox(n)));
    const row = /cli-owned-0,cli-owned-1,cli-owned-2 \+497 more +0/;
    const ps = await run(['ps']);
    assert.equal(ps.code, 0, ps.stderr);
    const line = ps.stdout.split('\n').find((l) => l.includes('cli-owner'));
    assert.match(line ?? '', row);
    assert.ok(!ps.stdout.includes('cli-owned-3'), 'the rest are counted, not listed');
    assert.match((await run(['watch', '--once'])).stdout, row);
    const rows = JSON.parse((await run(['ps', '--json'])).stdout) as {
      id: number;
      owns: string[];
      ownsCount: number;
    }[];
    const mine = rows.find((p) => p.id === owner.id)!;
    assert.equal(mine.ownsCount, 500);
    assert.equal(mine.owns.length, 100);
    assert.equal(new Set(mine.owns).size, 100);
    for (const name of mine.owns) assert.ok(names.includes(name), name);
  } finally {
    await owner.close();
  }
});

test("send --process sends to a process's inbox (direct naming); ps and watch count what waits there", async () => {
  const target = await connect({ socket: k.socket, name: 'cli-direct' });
  try {
    assert.equal((await run(['send', '--process', 'cli-direct', 'one'])).code, 0);
    const byId = await run(['send', '--process', String(target.id), 'two', '--json']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.deepEqual(JSON.parse(byId.stdout), { line: 1, outcome: 'queued' });

    const rows = JSON.parse((await run(['ps', '--json'])).stdout) as { id: number; inboxMessages: number }[];
    assert.equal(rows.find((p) => p.id === target.id)?.inboxMessages, 2);
    assert.match(
      (await run(['ps'])).stdout,
      new RegExp(`\\n *${target.id} +cli-direct +\\d+ +\\S+ +unix +- +2 +- +-\\n`),
    );
    assert.match(
      (await run(['watch', '--once'])).stdout,
      new RegExp(`\\ncli-direct\\(${target.id}\\) +\\d+ +\\S+ +unix +- +2 +- +-\\n`),
    );

    // Each line from standard input, in order; the sender is the command's own process.
    const first = (await target.receive<string>())!;
    const second = (await target.receive<string>())!;
    assert.deepEqual([first.body, second.body], ['one', 'two']);
    assert.notEqual(first.sender, second.sender, 'each command is a process of its own');
    const lines = await run(['send', '--process', 'cli-direct'], { input: 'three\nfour\n' });
    assert.equal(lines.code, 0, lines.stderr);
    assert.deepEqual(
      [(await target.receive<string>())?.body, (await target.receive<string>())?.body],
      ['three', 'four'],
    );

    // --receipt waits for the process to take it, and says so.
    const receipt = run(['send', '--process', 'cli-direct', 'five', '--receipt']);
    assert.equal((await target.receive<string>())?.body, 'five');
    const said = await receipt;
    assert.equal(said.code, 0, said.stderr);
    assert.match(said.stdout, new RegExp(`received by process ${target.id}\\n$`));
    const after = JSON.parse((await run(['ps', '--json'])).stdout) as { id: number; inboxMessages: number }[];
    assert.equal(after.find((p) => p.id === target.id)?.inboxMessages, 0);
  } finally {
    await target.close();
  }
  const none = await run(['send', '--process', 'cli-no-such-process', 'x']);
  assert.equal(none.code, 4);
  assert.match(none.stderr, /no process named 'cli-no-such-process' \(ESRCH\)/);
  const missing = await run(['send', '--process']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing PROCESS/);
  // Nonsense is a usage error before any lookup: an empty name, or digits Number() would round
  // to another id (9007199254740993 looked up process 9007199254740992).
  for (const [args, why] of [
    [['send', '--process', '', 'x'], /PROCESS needs a process name or id, not an empty string/],
    [
      ['send', '--process', '9007199254740993', 'x'],
      /PROCESS: 9007199254740993 is too large to be a process id/,
    ],
    [['recv', 'anything', '--from', ''], /--from needs a process name or id, not an empty string/],
    [['recv', 'anything', '--from', '99999999999999999999'], /--from: 99999999999999999999 is too large/],
  ] as const) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, why);
  }
});

test('watch --once and ps show a mailbox and the receiver blocked on it; --receipt names who took it', async () => {
  assert.equal((await run(['create', 'inbox-jobs', '--capacity', '4'])).code, 0);
  const receiver = spawnCli(['recv', 'inbox-jobs']);
  try {
    const mb = await receiversWaiting('inbox-jobs', 1, receiver);
    const receiverId = mb.waitingReceivers[0]!;

    const watch = await run(['watch', '--once']);
    assert.equal(watch.code, 0, watch.stderr);
    assert.ok(!watch.stdout.includes('\u001b['), 'no screen clearing when stdout is not a terminal');
    assert.match(watch.stdout, /^postbox watch /);
    // The column names cli.md shows.
    assert.match(
      watch.stdout,
      /\nMAILBOX +ID +DEPTH +MESSAGES +BYTES +WAITING TO SEND +WAITING TO RECEIVE\n/,
    );
    assert.match(watch.stdout, /\nPROCESS +PID +HOST +TRANSPORT +OWNS +INBOX +HOLDS +BLOCKED ON\n/);
    assert.match(watch.stdout, new RegExp(`\\ninbox-jobs +\\d+ +\\[\\.+\\] +0/4 +0 +- +${receiverId}\\n`));
    assert.match(
      watch.stdout,
      new RegExp(
        `\\n${receiverId} +${receiver.proc.pid} +\\S+ +unix +- +0 +- +receive mailbox 'inbox-jobs'\\n`,
      ),
    );
    assert.match(watch.stdout, /\ntester\(\d+\) /, 'named processes are shown by name');

    const ps = await run(['ps', '--json']);
    const row = (JSON.parse(ps.stdout) as { id: number; pid: number; blockedOn: string[] }[]).find(
      (p) => p.id === receiverId,
    );
    assert.equal(row?.pid, receiver.proc.pid);
    assert.deepEqual(row?.blockedOn, ["receive mailbox 'inbox-jobs'"]);
    const psText = await run(['ps']);
    assert.match(psText.stdout, /^ *ID +NAME +PID +HOST +TRANSPORT +OWNS +INBOX +HOLDS +BLOCKED-ON\n/);
    assert.match(psText.stdout, /\n +\d+ +tester +\d+ +\S+ +unix +- +\d+ +- +-\n/);

    const json = await run(['watch', '--once', '--json']);
    const frame = JSON.parse(json.stdout) as { mailboxes: { name: string }[]; processes: { id: number }[] };
    assert.ok(frame.mailboxes.some((m) => m.name === 'inbox-jobs'));
    assert.ok(frame.processes.some((p) => p.id === receiverId));
    // Neither lists its own short-lived process.
    for (const args of [
      ['ps', '--json'],
      ['watch', '--once', '--json'],
    ]) {
      const self = spawnCli(args);
      const r = await finish(self, 15_000, args.join(' '));
      assert.equal(r.code, 0, r.stderr);
      const parsed = JSON.parse(r.stdout) as { pid: number }[] | { processes: { pid: number }[] };
      const pids = (Array.isArray(parsed) ? parsed : parsed.processes).map((p) => p.pid);
      assert.ok(pids.includes(receiver.proc.pid!), r.stdout);
      assert.ok(!pids.includes(self.proc.pid!), `${args.join(' ')} lists itself: ${r.stdout}`);
    }

    const sent = await run(['send', 'inbox-jobs', 'hello', '--receipt']);
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, new RegExp(`^message \\(seq \\d+\\): received by process ${receiverId}\\n$`));
    const done = await finish(receiver, 10_000, 'recv inbox-jobs');
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, 'hello\n');
  } finally {
    kill(receiver);
  }
  await run(['rm', 'inbox-jobs']);
});

test('recv --all stops at the first Ctrl-C (130) once what it took is written, leaving the rest queued', async () => {
  assert.equal((await run(['create', 'drain'])).code, 0);
  // 2 MB of output: far more than the pipe and the paused stream below hold, so the command is
  // still draining, stalled on its output, when the interrupt comes.
  const total = 20_000;
  const box = await me.openMailbox('drain');
  await box.sendMany(Array.from({ length: total }, (_, i) => String(i).padStart(99, '0')));
  const p = spawn(process.execPath, [CLI, 'recv', 'drain', '--all'], {
    env: cliEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const l: Live = {
    proc: p,
    out: { stdout: '', stderr: '' },
    exited: new Promise((resolve) => p.once('close', (code, signal) => resolve({ code, signal }))),
  };
  p.stderr!.on('data', (d: Buffer) => {
    l.out.stderr += d;
  });
  try {
    // Standard output is not read yet: the command takes messages until its writes stall.
    await until(
      async () => (await box.stat()).count,
      (n) => n < total,
      10_000,
      'recv --all to start taking',
    );
    p.kill('SIGINT');
    p.stdout!.on('data', (d: Buffer) => {
      l.out.stdout += d;
    });
    const r = await finish(l, 15_000, 'recv drain --all');
    noStack(r);
    assert.equal(r.code, 130, r.stderr);
    const printed = r.stdout.split('\n').filter(Boolean);
    const left = (await box.stat()).count;
    // Nothing lost: what it took is what it printed, in order, and the rest is still queued.
    assert.ok(left > 0, 'the interrupt stopped the drain');
    assert.equal(printed.length + left, total);
    assert.deepEqual(
      printed,
      Array.from({ length: printed.length }, (_, i) => String(i).padStart(99, '0')),
    );
  } finally {
    kill(l);
    await box.close();
    await run(['rm', 'drain']);
  }
});

test('recv --follow prints messages as they come and exits 0 on Ctrl-C; an interrupted recv takes nothing', async () => {
  assert.equal((await run(['create', 'events'])).code, 0);
  const follower = spawnCli(['recv', 'events', '--follow', '--verbose']);
  try {
    await receiversWaiting('events', 1, follower);
    await run(['send', 'events', 'one']);
    await run(['send', 'events', 'two', '--type', '5', '--priority', '9']);
    const out = await outputOf(follower, (s) => s.split('\n').length > 2, 'two messages');
    assert.match(out, /^seq=1 type=1 priority=0 sender=\d+\tone\nseq=2 type=5 priority=9 sender=\d+\ttwo\n$/);
    follower.proc.kill('SIGINT');
    const r = await finish(follower, 10_000, 'recv --follow');
    assert.equal(r.code, 0, r.stderr);
  } finally {
    kill(follower);
  }

  const waiting = spawnCli(['recv', 'events']);
  try {
    await receiversWaiting('events', 1, waiting);
    waiting.proc.kill('SIGINT');
    const r = await finish(waiting, 10_000, 'recv');
    assert.equal(r.code, 130);
    assert.equal(r.stdout, '');
  } finally {
    kill(waiting);
  }
  await run(['send', 'events', 'after']);
  assert.equal((await mailboxNamed('events'))?.count, 1, 'the interrupted receive took nothing');
  await run(['rm', 'events']);
});

/**
 * Standard error without the line a command writes when the kernel has not confirmed an
 * interrupt within a second: on a loaded machine that can happen to any command.
 */
function withoutWaitNotice(stderr: string): string {
  return stderr.replace(/^postbox: waiting for the kernel to confirm the interrupt;.*\n/m, '');
}

test('a command whose kernel does not answer its Ctrl-C says so, and a second Ctrl-C ends it at once (130)', async () => {
  // A kernel of its own, stopped: the receive's cancel is never answered.
  const stopped = await startTestKernel();
  const env = { ...stopped.env };
  delete env.POSTBOX_URL;
  const owner = await connect({ socket: stopped.socket });
  await owner.createMailbox('held', { mode: 0o666 });
  const waiting = spawnCli(['recv', 'held'], env);
  try {
    await until(
      async () => {
        if (waiting.proc.exitCode !== null) throw new Error(`recv exited: ${JSON.stringify(waiting.out)}`);
        return (await owner.mailboxes()).find((m) => m.name === 'held');
      },
      (m) => (m?.waitingReceivers.length ?? 0) === 1,
      10_000,
      "recv waiting on 'held'",
    );
    stopped.proc.kill('SIGSTOP');
    waiting.proc.kill('SIGINT');
    await until(
      async () => waiting.out.stderr,
      (e) => e.includes('\n'),
      10_000,
      'a line on standard error after the first Ctrl-C',
    );
    assert.equal(
      waiting.out.stderr,
      'postbox: waiting for the kernel to confirm the interrupt; press Ctrl-C again to stop now (what was waiting may then still go through)\n',
    );
    waiting.proc.kill('SIGINT');
    const r = await finish(waiting, 10_000, 'recv after a second Ctrl-C');
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.stdout, '');
  } finally {
    kill(waiting);
    stopped.proc.kill('SIGCONT');
    await owner.close();
    await stopped.stop();
  }
});

test('a recv whose output is not read, stopped by Ctrl-C, says it waits for standard output; a second Ctrl-C ends it (130)', async () => {
  // It said it waited for the kernel, which had answered long before: what held it was its
  // output, and what a second Ctrl-C threw away was messages it had taken and not printed.
  const dir = mkdtempSync(join(tmpdir(), 'pb-unread-'));
  const fifo = join(dir, 'out');
  assert.equal((await sh(`mkfifo '${fifo}'`)).code, 0);
  // Open for reading and writing, and never read: the pipe's 64 KiB fill, then the command's own
  // buffer, and it waits.
  const unread = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
  assert.equal((await run(['create', 'unread-out'])).code, 0);
  const lines = Array.from({ length: 5000 }, (_, i) => `${String(i).padStart(19, '0')}\n`).join('');
  assert.equal((await run(['send', 'unread-out'], { input: lines })).code, 0);
  const p = spawn(process.execPath, [CLI, 'recv', 'unread-out', '--count', '5000'], {
    env: cliEnv(),
    stdio: ['ignore', unread, 'pipe'],
  });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => {
    stderr += d;
  });
  const exited = once(p, 'close');
  try {
    // 3,400 lines of 20 bytes are more than the pipe holds: some are still in the command.
    await until(
      () => mailboxNamed('unread-out'),
      (m) => (m?.received ?? 0) >= 3400,
      10_000,
      'recv to take more than its output pipe holds',
    );
    p.kill('SIGINT');
    await until(
      async () => stderr,
      (e) => e.includes('\n'),
      10_000,
      'a line on standard error after the first Ctrl-C',
    );
    assert.match(
      stderr,
      /^postbox: waiting for standard output to take the last \d+ bytes; press Ctrl-C again to stop now \(they are then lost, and with them what a recv took and had not yet printed\)\n$/,
    );
    p.kill('SIGINT');
    const [code] = await within(exited, 10_000, 'recv after a second Ctrl-C');
    assert.equal(code, 130, stderr);
  } finally {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    closeSync(unread);
    rmSync(dir, { recursive: true, force: true });
    await run(['rm', 'unread-out']);
  }
});

test('send from standard input, blocked on a full mailbox after the input ended, stops on the first Ctrl-C (130)', async () => {
  assert.equal((await run(['create', 'small', '--capacity', '2'])).code, 0);
  const sender = spawnCli(['send', 'small'], cliEnv(), 'pipe', 'one\ntwo\nthree\nfour\nfive\n');
  try {
    // The input has ended (it was all given at once); two fit, the others wait for room.
    await until(
      async () => {
        if (sender.proc.exitCode !== null) throw new Error(`send exited: ${JSON.stringify(sender.out)}`);
        return mailboxNamed('small');
      },
      (m) => m?.count === 2 && (m.waitingSenders.length ?? 0) === 3,
      10_000,
      'two queued and three sends waiting for room',
    );
    // Three sends of one process waiting: one sender, wherever the waiters are shown.
    const senderId = (await mailboxNamed('small'))!.waitingSenders[0]!;
    const ls = await run(['ls']);
    assert.match(ls.stdout, / small +- +0666 +\d+ +2\/2 +1 +0\n/);
    const stat = await run(['stat', 'small']);
    assert.match(stat.stdout, new RegExp(`waiting senders +${senderId} ×3\n`));
    const ps = await run(['ps', '--json']);
    const row = (JSON.parse(ps.stdout) as { id: number; blockedOn: string[] }[]).find(
      (p) => p.id === senderId,
    );
    assert.deepEqual(row?.blockedOn, ["send mailbox 'small' ×3"]);
    sender.proc.kill('SIGINT');
    const r = await finish(sender, 10_000, 'send');
    assert.equal(r.code, 130, r.stderr);
    // Without --json it says how far it got: a user can tell what to send again.
    assert.equal(
      withoutWaitNotice(r.stderr),
      'postbox send: interrupted: 2 lines sent, 3 lines withdrawn (never delivered)\n',
    );
  } finally {
    kill(sender);
  }
  assert.equal((await mailboxNamed('small'))?.count, 2, 'the waiting sends were withdrawn, not delivered');
  await run(['rm', 'small']);
});

test('past the 100 waiting operations the kernel names, ls counts their processes with + and stat counts the rest', async () => {
  const box = await me.createMailbox('crowded', { mode: 0o666, capacity: 1 });
  await box.send('fills it');
  const lines = Array.from({ length: 150 }, (_, i) => `w${i}\n`).join('');
  const sender = spawnCli(['send', 'crowded'], cliEnv(), 'pipe', lines);
  try {
    const st = await until(
      async () => {
        if (sender.proc.exitCode !== null) throw new Error(`send exited: ${JSON.stringify(sender.out)}`);
        return box.stat();
      },
      (s) => s.waitingSendersCount === 150,
      10_000,
      '150 sends waiting for room',
    );
    const id = st.waitingSenders[0]!;
    const stat = await run(['stat', 'crowded']);
    assert.match(stat.stdout, new RegExp(`waiting senders +${id} ×100 \\+50 more\n`));
    const ls = await run(['ls']);
    assert.match(ls.stdout, / crowded +tester\(\d+\) +0666 +\d+ +1\/1 +1\+ +0\n/);
    const watch = await run(['watch', '--once']);
    assert.match(watch.stdout, new RegExp(`\ncrowded .* ${id} ×100 \\+50 more +-\n`));
    sender.proc.kill('SIGINT');
    assert.equal((await finish(sender, 10_000, 'send')).code, 130);
  } finally {
    kill(sender);
    await box.delete();
  }
});

test('watch --json writes a line for each change, a process coming or going too, and none while nothing changes', async () => {
  const watcher = spawnCli(['watch', '--json', '--interval', '10']);
  try {
    type Frame = { time: number; processes: { name: string | null }[] };
    const frames = (): Frame[] =>
      watcher.out.stdout
        .slice(0, watcher.out.stdout.lastIndexOf('\n') + 1) // whole lines only
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Frame);
    const named = (f: { processes: { name: string | null }[] }): boolean =>
      f.processes.some((p) => p.name === 'watched-newcomer');
    await outputOf(watcher, (s) => s.includes('\n'), 'the first frame');
    const newcomer = await connect({ socket: k.socket, name: 'watched-newcomer' });
    await outputOf(watcher, () => frames().some(named), 'a frame with the new process');
    await newcomer.close();
    await outputOf(watcher, () => frames().length > 0 && !named(frames().at(-1)!), 'a frame without it');
    // Polled every 10 ms all along, it wrote a line only for a change: no line repeats the one
    // before it (another process of an earlier test leaving is a change too, so not counted).
    const states = frames().map(({ time: _time, ...state }) => JSON.stringify(state));
    assert.ok(states.length >= 3, watcher.out.stdout);
    for (let i = 1; i < states.length; i++)
      assert.notEqual(states[i], states[i - 1], `line ${i + 1} repeats`);
    watcher.proc.kill('SIGINT');
    const r = await finish(watcher, 10_000, 'watch --json');
    assert.equal(r.code, 0, r.stderr);
  } finally {
    kill(watcher);
  }
});

test('a send waiting for its receipt is a waiting sender in ls, stat and watch, and is not once taken', async () => {
  const box = await me.createMailbox<string>('receipts', { capacity: 5, mode: 0o666 });
  const other = await connect({ socket: k.socket, name: 'waiter' });
  try {
    const out = await other.openMailbox<string>(box.id);
    // Its message is in (count 1), not waiting for room: only a receipt keeps the send open.
    const sent = out.send('hello', { receipt: true });
    const st = await until(
      () => box.stat(),
      (s) => s.count === 1,
      10_000,
      'the message is in the mailbox',
    );
    assert.deepEqual(st.waitingSenders, [], 'not waiting for room');
    assert.deepEqual(st.waitingReceipts, [other.id]);
    const ls = await run(['ls']);
    assert.match(ls.stdout, / receipts +tester\(\d+\) +0666 +\d+ +1\/5 +1 +0\n/);
    const stat = await run(['stat', 'receipts']);
    assert.match(stat.stdout, new RegExp(`waiting for receipt +waiter\\(${other.id}\\)\n`));
    const watch = await run(['watch', '--once']);
    assert.match(watch.stdout, new RegExp(`receipts .* waiter\\(${other.id}\\) +-\n`));
    assert.equal((await box.receive())?.body, 'hello');
    assert.equal((await sent).receiver, me.id);
    const done = await box.stat();
    assert.deepEqual(done.waitingReceipts, [], 'taken: the send is complete');
    assert.match((await run(['ls'])).stdout, / receipts +tester\(\d+\) +0666 +\d+ +0\/5 +0 +0\n/);
  } finally {
    await other.close();
    await run(['rm', 'receipts']);
  }
});

test('send to a FIFO waits for a reader, as echo TEXT > fifo does; --nowait and --timeout do not wait for ever', async () => {
  assert.equal((await run(['mkfifo', 'unread'])).code, 0);
  const nowait = await run(['send', 'unread', 'x', '--nowait']);
  assert.equal(nowait.code, 3, nowait.stderr);
  assert.match(nowait.stderr, /nobody has FIFO 'unread' open for reading \(EAGAIN\)/);
  const timed = await run(['send', 'unread', 'x', '--timeout', '50']);
  assert.equal(timed.code, 6, timed.stderr);
  assert.match(timed.stderr, /nobody opened FIFO 'unread' for reading within 50 ms; nothing was sent/);
  assert.equal((await mailboxNamed('unread'))?.count, 0, 'nothing was queued');

  const sender = spawnCli(['send', 'unread', 'hello'], cliEnv(), 'pipe');
  try {
    // The send has opened its end and waits: nothing is in the FIFO before a reader comes.
    await until(
      () => mailboxNamed('unread'),
      (m) => m?.writers === 1,
      10_000,
      'the sender to open its end',
    );
    assert.equal((await mailboxNamed('unread'))?.count, 0);
    const reader = spawnCli(['fifo', 'read', 'unread']);
    try {
      const s = await finish(sender, 10_000, 'send');
      assert.equal(s.code, 0, s.stderr);
      const r = await finish(reader, 10_000, 'fifo read');
      assert.equal(r.stdout, 'hello\n');
    } finally {
      kill(reader);
    }
  } finally {
    kill(sender);
  }
  await run(['rm', 'unread']);
});

test('fifo read ends (exit 0) when a writer opens and closes without writing a byte', async () => {
  assert.equal((await run(['mkfifo', 'quiet'])).code, 0);
  const reader = spawnCli(['fifo', 'read', 'quiet']);
  try {
    await until(
      () => mailboxNamed('quiet'),
      (m) => m?.readers === 1,
      10_000,
      'the reader to open',
    );
    const writer = spawnCli(['fifo', 'write', 'quiet'], cliEnv(), 'pipe', '');
    assert.equal((await finish(writer, 10_000, 'fifo write')).code, 0);
    const r = await finish(reader, 10_000, 'fifo read');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
  } finally {
    kill(reader);
  }
  await run(['rm', 'quiet']);
});

test('the FIFO demo: fifo read in one process, fifo write in another; rm leaves open ends working', async () => {
  const made = await run(['mkfifo', 'temp']);
  assert.equal(made.code, 0, made.stderr);
  const reader = spawnCli(['fifo', 'read', 'temp']);
  const writer = spawnCli(['fifo', 'write', 'temp'], cliEnv(), 'pipe');
  try {
    const fifo = await until(
      () => mailboxNamed('temp'),
      (m) => m?.readers === 1 && m.writers === 1,
      10_000,
      'both ends to open',
    );
    const id = fifo!.id;
    writer.proc.stdin!.write('hello\n');
    await outputOf(reader, (s) => s === 'hello\n', 'the first line');

    // Removing the name does not disturb the open ends.
    const rm = await run(['rm', 'temp']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await run(['stat', 'temp'])).code, 4, 'the name is gone');
    const still = (await me.mailboxes()).find((m) => m.id === id);
    assert.equal(still?.unlinked, true);
    const ls = await run(['ls']);
    assert.match(ls.stdout, / temp \(unlinked\) /);

    writer.proc.stdin!.write('world\nthird line\n');
    await outputOf(reader, (s) => s === 'hello\nworld\nthird line\n', 'the next lines');
    writer.proc.stdin!.end();
    const w = await finish(writer, 10_000, 'fifo write');
    assert.equal(w.code, 0, w.stderr);
    // End of file once the last writer has closed.
    const r = await finish(reader, 10_000, 'fifo read');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello\nworld\nthird line\n');
    // The unlinked FIFO went with its last end.
    await until(
      async () => (await me.mailboxes()).some((m) => m.id === id),
      (present) => !present,
      10_000,
      'the unlinked FIFO to go',
    );
  } finally {
    kill(reader);
    kill(writer);
  }
});

test('rm of a POSIX queue unlinks it, as rm of /dev/mqueue/NAME does: an open descriptor keeps working', async () => {
  // Made by a process that has ended, so that anyone may remove it, as a Linux user may unlink
  // only a queue of their own: the CLI's process is not this one.
  const maker = await connect({ socket: k.socket, name: 'mq-maker' });
  const made = posix(maker);
  await made.mq_close(await made.mq_open('/rmq', O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 }));
  await maker.close();
  const mq = posix(me);
  const mqd = await mq.mq_open('/rmq', O_RDWR);
  const id = (await mailboxNamed('/rmq'))!.id;
  try {
    const rm = await run(['rm', '/rmq', '--json']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(JSON.parse(rm.stdout), [{ ref: '/rmq', id, name: '/rmq', action: 'unlinked' }]);
    assert.equal((await run(['stat', '/rmq'])).code, 4, 'the name is gone');
    // The descriptor still sends and receives, where a delete would have failed it with EIDRM.
    await mq.mq_send(mqd, 'still here', 1);
    assert.equal((await mq.mq_receive(mqd, 16)).data.toString(), 'still here');
  } finally {
    await mq.mq_close(mqd);
  }
  // The queue goes with its last descriptor.
  await until(
    async () => (await me.mailboxes()).some((m) => m.id === id),
    (present) => !present,
    10_000,
    'the unlinked queue to go',
  );
});

test('recv of a FIFO whose last writer has closed exits 3 once nothing is left; fifo write whose reader has gone exits 1 (EPIPE)', async () => {
  assert.equal((await run(['mkfifo', 'ended'])).code, 0);
  const w = await me.openMailbox('ended', { role: 'write' });
  await w.send('last words');
  w.close();
  const r = await run(['recv', 'ended', '--count', '2']);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'last words\n');
  assert.equal(r.stderr, "postbox recv: end of mailbox 'ended': no writer is left\n");
  await run(['rm', 'ended']);

  assert.equal((await run(['mkfifo', 'broken'])).code, 0);
  const reader = await me.openMailbox<string>('broken', { role: 'read' });
  const writer = spawnCli(['fifo', 'write', 'broken'], cliEnv(), 'pipe');
  writer.proc.stdin!.on('error', () => {});
  try {
    writer.proc.stdin!.write('hello\n');
    assert.equal((await reader.receive())?.text(), 'hello\n');
    reader.close();
    await until(
      () => mailboxNamed('broken'),
      (m) => m?.readers === 0,
      10_000,
      'the reader to close',
    );
    writer.proc.stdin!.end('nobody reads this\n');
    const done = await finish(writer, 10_000, 'fifo write with no reader');
    assert.equal(done.code, 1, done.stderr);
    assert.match(done.stderr, /\(EPIPE\)\n$/);
    noStack(done);
  } finally {
    kill(writer);
  }
  await run(['rm', 'broken']);
});

test('FIFO ends wait for each other, in either order, and can be used again', async () => {
  assert.equal((await run(['mkfifo', 'pipe2'])).code, 0);
  for (let round = 0; round < 2; round++) {
    // Writer first: it waits for a reader before writing anything.
    const writer = spawnCli(['fifo', 'write', 'pipe2'], cliEnv(), 'pipe', `round ${round}\nsecond\n`);
    try {
      await until(
        () => mailboxNamed('pipe2'),
        (m) => m?.writers === 1,
        10_000,
        'the writer to open',
      );
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(writer.proc.exitCode, null, 'with no reader, the writer waits');
      const r = await run(['fifo', 'read', 'pipe2']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `round ${round}\nsecond\n`);
      assert.equal((await finish(writer, 10_000, 'fifo write')).code, 0);
    } finally {
      kill(writer);
    }
  }
  const notFifo = await run(['fifo', 'read', 'tester-not-fifo']);
  assert.equal(notFifo.code, 4);
  await run(['create', 'plain']);
  const plain = await run(['fifo', 'read', 'plain']);
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /not a FIFO/);
  await run(['rm', 'pipe2', 'plain']);
});

test("limits shows the running kernel's limits and the flag that changes each", async () => {
  // A mailbox of the tester's holds 10,000 bytes: the bytes in use count at least those.
  const held = await me.createMailbox(null);
  await held.send(Buffer.alloc(10_000));
  const json = await run(['limits', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const l = JSON.parse(json.stdout) as {
    limits: Record<string, number>;
    inUse: Record<string, number>;
    flags: Record<string, string>;
  };
  assert.equal(l.limits.maxMessageSize, 65536, 'the kernel was started with --max-message-size 65536');
  assert.equal(l.flags.maxMessageSize, '--max-message-size');
  assert.equal(l.flags.maxMailboxes, '--max-mailboxes');
  const others = (await me.processes()).length;
  assert.equal(l.inUse.maxProcesses, others, 'the processes connected, not counting the command itself');
  assert.ok(l.inUse.maxTotalBytes! >= 10_000, `bytes in use: ${l.inUse.maxTotalBytes}`);
  const text = await run(['limits']);
  await held.delete();
  assert.match(text.stdout, /^LIMIT +VALUE +IN USE +CHANGE WITH\n/);
  assert.match(text.stdout, /max message size +65,536 bytes +postbox kernel --max-message-size BYTES\n/);
  assert.match(text.stdout, /max bytes per mailbox.*postbox kernel --max-mailbox-bytes BYTES\n/);
  assert.match(text.stdout, /max mailboxes.*postbox kernel --max-mailboxes N\n/);
  assert.match(text.stdout, /max processes +100,000 +\d+ +postbox kernel --max-processes N\n/);
  assert.match(
    text.stdout,
    /max bytes queued in all +[\d,]+ bytes +[\d,]+ +postbox kernel --max-total-bytes BYTES\n/,
  );
  assert.match(
    text.stdout,
    /max bytes waiting per process +1,073,741,824 bytes +[\d,]+ +postbox kernel --max-waiting-bytes BYTES\n/,
  );
  assert.equal(l.flags.maxWaitingBytes, '--max-waiting-bytes');
  assert.equal(typeof l.inUse.maxWaitingBytes, 'number');
});

test('--socket and --url tcp:// reach the kernel without $POSTBOX_SOCKET', async () => {
  const elsewhere = cliEnv({ POSTBOX_SOCKET: '/nonexistent/postbox/k.sock' });
  await run(['create', 'remote']);
  const bySocket = await run(['ls', '--json', '--socket', k.socket], { env: elsewhere });
  assert.equal(bySocket.code, 0, bySocket.stderr);
  assert.ok((JSON.parse(bySocket.stdout) as { name: string }[]).some((m) => m.name === 'remote'));
  assert.ok(k.tcpUrl);
  const sent = await run(['send', 'remote', 'over tcp', '--url', k.tcpUrl], { env: elsewhere });
  assert.equal(sent.code, 0, sent.stderr);
  const ps = spawnCli(['recv', 'remote', '--url', k.tcpUrl, '--count', '2'], elsewhere);
  try {
    const tcpRow = await until(
      async () => (await me.processes()).find((p) => p.pid === ps.proc.pid),
      (p) => p !== undefined && p.blockedOn.length > 0,
      10_000,
      'the tcp receiver to wait',
    );
    assert.equal(tcpRow?.transport, 'tcp');
    await run(['send', 'remote', 'second']);
    const r = await finish(ps, 10_000, 'recv over tcp');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'over tcp\nsecond\n');
  } finally {
    kill(ps);
  }
  // A kernel that answers and refuses says why; it is not "no kernel".
  for (const [token, why] of [
    ['wrong', /refused this process: wrong token: use the kernel's token: .*token file.* \(EACCES\)/],
    ['', /refused this process: a token is required over TCP.*: use the kernel's token/],
  ] as const) {
    const refused = await run(['ls', '--url', k.tcpUrl], { env: { ...elsewhere, POSTBOX_TOKEN: token } });
    // Permission denied (5), as for a socket this user may not use; it was 1, "no kernel".
    assert.equal(refused.code, 5);
    assert.match(refused.stderr, why);
    assert.doesNotMatch(refused.stderr, /no kernel is answering/);
  }
  await run(['rm', 'remote']);
});

test('send --receipt of many lines, interrupted, withdraws every pending line and says what became of each', async () => {
  // The lines were in the mailbox waiting for a receiver when Ctrl-C came: the command said
  // each had failed (ENOTCONN) and exited 130, and they were delivered later all the same.
  for (const [signal, exit, takeOne] of [
    ['SIGINT', 130, true],
    ['SIGTERM', 143, false],
  ] as const) {
    const name = `receipts-${signal}`;
    const box = await me.createMailbox(name, { mode: 0o666 });
    const sender = spawnCli(['send', name, '--receipt', '--json'], cliEnv(), 'pipe', 'one\ntwo\nthree\n');
    try {
      await until(
        async () => {
          if (sender.proc.exitCode !== null) throw new Error(`send exited: ${JSON.stringify(sender.out)}`);
          return mailboxNamed(name);
        },
        (m) => m?.count === 3,
        10_000,
        'three lines in the mailbox, waiting for their receipts',
      );
      if (takeOne) {
        // Taken before the interrupt: that line is received, whatever happens to the others.
        assert.equal((await box.receive({ nowait: true }))?.body, 'one');
        await outputOf(sender, (s) => s.includes('"received"'), 'the receipt of line 1');
      }
      sender.proc.kill(signal);
      const r = await finish(sender, 10_000, `send --receipt, ${signal}`);
      assert.equal(r.code, exit, r.stderr);
      const lines = r.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as { line: number; outcome: string; code?: string; receiver?: number })
        .sort((a, b) => a.line - b.line);
      assert.deepEqual(
        lines.map((l) => [l.line, l.outcome, l.code ?? l.receiver]),
        [
          [1, takeOne ? 'received' : 'failed', takeOne ? me.id : 'ECANCELED'],
          [2, 'failed', 'ECANCELED'],
          [3, 'failed', 'ECANCELED'],
        ],
        r.stdout,
      );
    } finally {
      kill(sender);
    }
    // The kernel's answer was final: the withdrawn lines are not in the mailbox, now or later.
    const st = await box.stat();
    assert.equal(st.count, 0, 'the withdrawn lines are not delivered later');
    assert.equal(await box.receive({ nowait: true }), null);
    await box.delete();
  }
});

test('send interrupted while it waits for more input exits 130 and says how many lines went', async () => {
  // Nothing is waiting in the kernel: the command waits on its standard input, which a Ctrl-C
  // ends early, so not everything was sent.
  const box = await me.createMailbox('typing', { mode: 0o666 });
  const sender = spawnCli(['send', 'typing'], cliEnv(), 'pipe');
  try {
    sender.proc.stdin!.write('one\ntwo\n');
    await until(
      async () => {
        if (sender.proc.exitCode !== null) throw new Error(`send exited: ${JSON.stringify(sender.out)}`);
        return (await box.stat()).count;
      },
      (n) => n === 2,
      10_000,
      'two lines sent',
    );
    sender.proc.kill('SIGINT');
    const r = await finish(sender, 10_000, 'send waiting for input');
    assert.equal(r.code, 130, r.stderr);
    assert.equal(
      withoutWaitNotice(r.stderr),
      'postbox send: interrupted: 2 lines sent, 0 lines withdrawn (never delivered)\n',
    );
  } finally {
    kill(sender);
  }
  await box.delete();
});

test('send --json gives the seq of a line that waited for room or was received, and the receiver', async () => {
  // cli.md: seq when the kernel gave one (a received message, or one that had to wait for room);
  // a line queued at once has none.
  const box = await me.createMailbox<string>('seqs', { mode: 0o666, capacity: 1 });
  try {
    const queued = await run(['send', 'seqs', 'first', '--json']);
    assert.equal(queued.code, 0, queued.stderr);
    assert.deepEqual(JSON.parse(queued.stdout), { line: 1, outcome: 'queued' });
    // Full: this one waits for room, which the receive below makes.
    const waits = spawnCli(['send', 'seqs', 'second', '--json']);
    try {
      await until(
        () => box.stat(),
        (st) => st.waitingSenders.length === 1,
        10_000,
        'the send to wait for room',
      );
      assert.equal((await box.receive())?.body, 'first');
      const r = await finish(waits, 10_000, 'send that waited for room');
      assert.equal(r.code, 0, r.stderr);
      const o = JSON.parse(r.stdout) as { line: number; outcome: string; seq?: number };
      assert.equal(o.outcome, 'queued');
      const second = await box.receive();
      assert.equal(second?.body, 'second');
      assert.equal(o.seq, second.seq);
    } finally {
      kill(waits);
    }
    const received = spawnCli(['send', 'seqs', 'third', '--receipt', '--json']);
    try {
      const m = await box.receive();
      assert.equal(m?.body, 'third');
      const r = await finish(received, 10_000, 'send --receipt');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { line: 1, outcome: 'received', seq: m!.seq, receiver: me.id });
    } finally {
      kill(received);
    }
  } finally {
    await box.delete();
  }
});

test('send whose standard output closes with input left unsent exits 141, not 0', async () => {
  // `seq 1 100000 | postbox send q --json | head -1` sent a part of its input and exited 0.
  const box = await me.createMailbox('half-sent', { mode: 0o666 });
  const child = spawn(process.execPath, [CLI, 'send', 'half-sent', '--json'], {
    env: cliEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const l = live(child);
  // The command may stop reading before all of this is written: that is what is tested.
  child.stdin!.on('error', () => {});
  try {
    child.stdin!.write('first\n');
    await outputOf(l, (s) => s.includes('\n'), 'the first line of output');
    // The reader goes away, like `head -1` after its line; more input comes, and is not ended.
    child.stdout!.destroy();
    child.stdin!.write(Array.from({ length: 20_000 }, (_, i) => `m${i}\n`).join(''));
    const r = await finish(l, 15_000, 'send with its output closed');
    assert.equal(r.code, 141, r.stderr);
    assert.equal(r.stderr, '', 'it stops quietly, as a tool SIGPIPE ended would');
  } finally {
    kill(l);
  }
  await box.delete();
});

test('kernel --quiet prints only where it listens, not its shutdown', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pb-quiet-'));
  const kernel = spawnCli(['kernel', '--quiet', '--socket', join(dir, 'k.sock')]);
  try {
    await outputOf(kernel, (s) => s.includes('listening on unix:'), 'the kernel to listen');
    kernel.proc.kill('SIGTERM');
    const r = await finish(kernel, 10_000, 'kernel --quiet');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^postbox kernel \d+ listening on unix:\S+\n$/);
    assert.equal(r.stderr, '');
  } finally {
    kill(kernel);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a long mailbox name is cut in the ls and watch tables, and whole in --json', async () => {
  const long = `long-${'x'.repeat(295)}`;
  const box = await me.createMailbox(long, { mode: 0o666 });
  try {
    const shown = `${long.slice(0, 39)}…`;
    const ls = await run(['ls']);
    assert.equal(ls.code, 0, ls.stderr);
    const [header, ...rows] = ls.stdout.trimEnd().split('\n');
    // The column is as wide as the widest cut name, not 300: other rows stay readable.
    assert.ok(header!.indexOf('OWNER') - header!.indexOf('NAME') <= 42, header);
    assert.ok(
      rows.some((r) => r.includes(` ${shown} `)),
      ls.stdout,
    );
    assert.ok(!ls.stdout.includes(long), 'the whole name is not in the table');
    const watch = await run(['watch', '--once']);
    assert.equal(watch.code, 0, watch.stderr);
    assert.match(watch.stdout, new RegExp(`\\n${shown} +\\d+ +\\[`));
    assert.ok(!watch.stdout.includes(long));
    const json = await run(['ls', '--json']);
    assert.ok((JSON.parse(json.stdout) as { name: string }[]).some((m) => m.name === long));
  } finally {
    await box.delete();
  }
});

test('tables stay aligned with wide and combining characters in names; long process names are cut too', async () => {
  // Widths were counted in code points: a CJK character takes two columns and a combining
  // accent none, so every column after such a name was out of line. And ps printed a process's
  // name whole, however long, though the docs say tables cut names at 40.
  const long = `long-process-${'y'.repeat(50)}`;
  const kana = await connect({ socket: k.socket, name: 'ワーカー' });
  const lengthy = await connect({ socket: k.socket, name: long });
  const wide = await kana.createMailbox('名前の箱', { mode: 0o666 });
  const accented = await lengthy.createMailbox('e\u0301te\u0301 🎉', { mode: 0o666 });
  const waiting = (await lengthy.openMailbox('名前の箱')).receive().catch(() => {});
  try {
    await until(
      () => mailboxNamed('名前の箱'),
      (m) => (m?.waitingReceivers.length ?? 0) === 1,
      10_000,
      'the receive to wait',
    );
    /** Terminal columns of the strings this test uses: CJK and emoji 2, combining marks 0. */
    const columns = (s: string): number =>
      [...s].reduce(
        (n, c) =>
          n +
          (/[\u3040-\u30ff\u4e00-\u9fff]|\p{Emoji_Presentation}/u.test(c) ? 2 : /\p{Mn}/u.test(c) ? 0 : 1),
        0,
      );
    /** The column where `cell` starts in `row`. */
    const at = (row: string, cell: string): number => {
      assert.ok(row.includes(cell), `'${cell}' in\n${row}`);
      return columns(row.slice(0, row.indexOf(cell)));
    };
    const cutLong = `${long.slice(0, 39)}…`;

    const ls = await run(['ls']);
    assert.equal(ls.code, 0, ls.stderr);
    const [lsHeader, ...lsRows] = ls.stdout.trimEnd().split('\n');
    for (const [box, owner] of [
      ['名前の箱', `ワーカー(${kana.id})`],
      ['e\u0301te\u0301 🎉', `${cutLong}(${lengthy.id})`],
    ] as const) {
      const row = lsRows.find((r) => r.includes(` ${box} `))!;
      assert.equal(at(row, owner), lsHeader!.indexOf('OWNER'), ls.stdout);
      assert.equal(at(row, '0666'), lsHeader!.indexOf('MODE'), ls.stdout);
    }

    const ps = await run(['ps']);
    assert.equal(ps.code, 0, ps.stderr);
    assert.ok(!ps.stdout.includes(long), `the whole name is not in the table:\n${ps.stdout}`);
    const [psHeader, ...psRows] = ps.stdout.trimEnd().split('\n');
    for (const name of ['ワーカー', cutLong]) {
      const row = psRows.find((r) => r.includes(` ${name} `))!;
      assert.equal(at(row, ' unix ') + 1, psHeader!.indexOf('TRANSPORT'), ps.stdout);
    }

    const watch = await run(['watch', '--once']);
    assert.equal(watch.code, 0, watch.stderr);
    assert.ok(!watch.stdout.includes(long), watch.stdout);
    const lines = watch.stdout.split('\n');
    const mbHeader = lines.find((l) => l.startsWith('MAILBOX'))!;
    for (const box of ['名前の箱', 'e\u0301te\u0301 🎉'])
      assert.equal(
        at(lines.find((l) => l.startsWith(`${box} `))!, '['),
        mbHeader.indexOf('DEPTH'),
        watch.stdout,
      );
    assert.equal(
      at(lines.find((l) => l.startsWith('名前の箱 '))!, `${cutLong}(${lengthy.id})`),
      mbHeader.indexOf('WAITING TO RECEIVE'),
      watch.stdout,
    );
    const procHeader = lines.find((l) => l.startsWith('PROCESS'))!;
    for (const name of [`ワーカー(${kana.id})`, `${cutLong}(${lengthy.id})`])
      assert.equal(
        at(lines.find((l) => l.startsWith(`${name} `))!, ' unix ') + 1,
        procHeader.indexOf('TRANSPORT'),
        watch.stdout,
      );
  } finally {
    await wide.delete();
    await accented.delete();
    await kana.close();
    await lengthy.close();
    await waiting;
  }
});

test('a line over the size limit is refused as soon as that much is read, not held until its end', async () => {
  // readline held a line until its newline: `head -c 1G /dev/zero | postbox send q` grew to
  // gigabytes and died with a stack trace. The kernel here takes messages of 64 KiB at most.
  await me.createMailbox('long-line', { mode: 0o666 });
  const sender = spawnCli(['send', 'long-line', '--json'], cliEnv(), 'pipe');
  sender.proc.stdin!.on('error', () => {});
  try {
    // Two lines, then one that never ends: the input stays open.
    sender.proc.stdin!.write(`first\nsecond\n${'x'.repeat(100_000)}`);
    const r = await finish(sender, 10_000, 'send of a line with no end');
    assert.equal(r.code, 1, r.stderr);
    noStack(r);
    assert.match(
      r.stderr,
      /^postbox send: line 3: the line is longer than the 65536-byte message size limit of mailbox 'long-line' \(postbox kernel --max-message-size\) \(EMSGSIZE\)\n$/,
    );
    assert.deepEqual(sendOutcomes(r.stdout), [
      [1, 'queued', undefined],
      [2, 'queued', undefined],
      [3, 'failed', 'EMSGSIZE'],
    ]);
  } finally {
    kill(sender);
  }
  // What came before it is not lost.
  assert.equal((await run(['recv', 'long-line', '--all'])).stdout, 'first\nsecond\n');

  // A FIFO is a stream of bytes: its writer passes a long line on in pieces as it reads it.
  assert.equal((await run(['mkfifo', 'long-fifo'])).code, 0);
  const reader = spawnCli(['fifo', 'read', 'long-fifo']);
  const writer = spawnCli(['fifo', 'write', 'long-fifo'], cliEnv(), 'pipe');
  try {
    writer.proc.stdin!.write('y'.repeat(200_000));
    await outputOf(reader, (s) => s.length >= 65_536, 'the first 64 KiB of a line with no end yet');
    writer.proc.stdin!.end('\r\nlast');
    const w = await finish(writer, 10_000, 'fifo write');
    assert.equal(w.code, 0, w.stderr);
    const r = await finish(reader, 10_000, 'fifo read');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${'y'.repeat(200_000)}\nlast\n`);
  } finally {
    kill(reader);
    kill(writer);
  }
  await run(['rm', 'long-line', 'long-fifo']);
});

test('fifo write of a large input keeps standard error clean and the bytes exact', async () => {
  // Each wait for the FIFO to drain left a 'close' and an 'error' listener on the writer, and
  // after ten of them Node printed a MaxListenersExceededWarning to standard error.
  assert.equal((await run(['mkfifo', 'big-fifo'])).code, 0);
  const data = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
  for (const mode of [['--chunks'], []]) {
    const input = mode.length > 0 ? data : Buffer.from('line of text\n'.repeat(150_000));
    const reader = spawn(process.execPath, [CLI, 'fifo', 'read', 'big-fifo'], {
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const got: Buffer[] = [];
    reader.stdout!.on('data', (d: Buffer) => got.push(d));
    let readerErr = '';
    reader.stderr!.on('data', (d: Buffer) => {
      readerErr += d;
    });
    const readerDone = once(reader, 'close');
    try {
      const writer = spawnCli(['fifo', 'write', 'big-fifo', ...mode], cliEnv(), 'pipe');
      writer.proc.stdin!.end(input);
      const w = await finish(writer, 30_000, `fifo write ${mode.join(' ')}`);
      assert.equal(w.code, 0, w.stderr);
      assert.equal(w.stderr, '', `fifo write ${mode.join(' ')}: nothing on standard error`);
      const [code] = (await readerDone) as [number | null];
      assert.equal(code, 0, readerErr);
      assert.ok(Buffer.concat(got).equals(input), `fifo write ${mode.join(' ')}: the bytes as written`);
    } finally {
      if (reader.exitCode === null && reader.signalCode === null) reader.kill('SIGKILL');
    }
  }
  await run(['rm', 'big-fifo']);
});

test('recv writes a binary body as its bytes: recv --all > file keeps them', async () => {
  // Bodies were decoded as UTF-8 to be written, so bytes that are not UTF-8 came out as U+FFFD.
  const box = await me.createMailbox('binary', { mode: 0o666 });
  const bodies = [
    Buffer.from([0x00, 0xff, 0x80, 0x41]),
    Buffer.from([0xc3, 0x28, 0x0a]), // ends with a newline: none is added
    Buffer.from('héllo'),
  ];
  for (const b of bodies) await box.send(b);
  const child = spawn(process.execPath, [CLI, 'recv', 'binary', '--all'], {
    env: cliEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const got: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => got.push(d));
  const l = live(child);
  const r = await finish(l, 10_000, 'recv --all of binary bodies');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    Buffer.concat(got),
    Buffer.concat([bodies[0]!, Buffer.from('\n'), bodies[1]!, bodies[2]!, Buffer.from('\n')]),
  );
  // --json: a body that is not UTF-8 is base64, and says so; one that is stays text.
  for (const b of bodies.slice(0, 2)) await box.send(b);
  await box.send(Buffer.from('héllo'));
  const json = await run(['recv', 'binary', '--all', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(
    json.stdout
      .trimEnd()
      .split('\n')
      .map((l) => {
        const o = JSON.parse(l) as { body: string; encoding?: string };
        return [o.body, o.encoding];
      }),
    [
      [bodies[0]!.toString('base64'), 'base64'],
      [bodies[1]!.toString('base64'), 'base64'],
      ['héllo', undefined],
    ],
  );
  await box.delete();
});

test('a line over the size limit stops the input before it is sent: nothing after it gets in', async () => {
  // A whole line over the mailbox's limit was refused only by the kernel, once the lines after
  // it were in flight, and they were delivered: the input did not stop at the line that failed.
  const box = await me.createMailbox('tight', { mode: 0o666, maxMessageSize: 10 });
  const r = await run(['send', 'tight'], { input: 'one\ntwo\nthis is too long\nfour\nfive\n' });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr,
    "postbox send: line 3: a 16-byte message is over the 10-byte limit of mailbox 'tight' (EMSGSIZE)\n",
  );
  assert.equal((await run(['recv', 'tight', '--all'])).stdout, 'one\ntwo\n');
  // Counted in bytes, as the kernel counts: five characters of two bytes each fit, six do not.
  const typed = await run(['send', 'tight', '--typed', '--json'], { input: '7 ééééé\n7 éééééé\n7 x\n' });
  assert.equal(typed.code, 1, typed.stderr);
  // They come as sends settle; the refusal does not wait for the send before it.
  assert.deepEqual(sendOutcomes(typed.stdout), [
    [1, 'queued', undefined],
    [2, 'failed', 'EMSGSIZE'],
  ]);
  assert.equal((await run(['recv', 'tight', '--all'])).stdout, 'ééééé\n');
  await box.delete();
});

test('a send that fails part way says how many lines after the failed one were sent anyway', async () => {
  // The sends are pipelined: lines after the failed one were in flight and got in, and the
  // error named only the failed line, so a script sending again from it sent them twice. Only
  // the kernel knows this failure (a mailbox of messages of exactly 4 bytes), so it comes back
  // while the lines after it are in flight.
  const box = await me.createMailbox('exact', { mode: 0o666, capacity: 16, messageSize: 4 });
  const r = await run(['send', 'exact'], { input: 'one1\ntwo2\ntoo long\nfour\nfive\n' });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr,
    "postbox send: line 3: mailbox 'exact' takes messages of exactly 4 bytes; this one is 8 (EMSGSIZE); 2 lines after it, already in flight, were sent\n",
  );
  assert.equal((await run(['recv', 'exact', '--all'])).stdout, 'one1\ntwo2\nfour\nfive\n');
  const one = await run(['send', 'exact'], { input: 'one1\ntoo long\nthr3\n' });
  assert.equal(one.code, 1, one.stderr);
  assert.match(one.stderr, /; 1 line after it, already in flight, was sent\n$/);
  assert.equal((await run(['recv', 'exact', '--all'])).stdout, 'one1\nthr3\n');
  // A blank line under --typed counts as a line but is never sent: it is not one of those sent.
  const typed = await run(['send', 'exact', '--typed'], { input: '1 one1\n\n1 too long\n1 fou4\n' });
  assert.equal(typed.code, 1, typed.stderr);
  assert.match(
    typed.stderr,
    /^postbox send: line 3: .*\(EMSGSIZE\); 1 line after it, already in flight, was sent\n$/,
  );
  assert.equal((await run(['recv', 'exact', '--all'])).stdout, 'one1\nfou4\n');
  await box.delete();
});

test('a failed line withdraws the sends still waiting: the command ends with its error', async () => {
  // Sends still waiting for room went on waiting after the error was known: with no one to
  // empty the mailbox, the command printed nothing and never ended.
  const box = await me.createMailbox('stuck', { mode: 0o666, capacity: 1, messageSize: 4 });
  const r = await run(['send', 'stuck'], { input: 'abcd\nabcdefgh\nwxyz\n' });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr,
    "postbox send: line 2: mailbox 'stuck' takes messages of exactly 4 bytes; this one is 8 (EMSGSIZE); 1 line still waiting was withdrawn (never delivered)\n",
  );
  // Now the mailbox is full, so the line before the failed one waits too: it is withdrawn with
  // the one after, and --json says so line by line.
  const json = await run(['send', 'stuck', '--json'], { input: 'efgh\nabcdefgh\nwxyz\n' });
  assert.equal(json.code, 1, json.stderr);
  assert.deepEqual(sendOutcomes(json.stdout), [
    [1, 'failed', 'ECANCELED'],
    [2, 'failed', 'EMSGSIZE'],
    [3, 'failed', 'ECANCELED'],
  ]);
  assert.match(json.stderr, /\(EMSGSIZE\); 2 lines still waiting were withdrawn \(never delivered\)\n$/);
  assert.equal((await run(['recv', 'stuck', '--all'])).stdout, 'abcd\n');
  await box.delete();
});

test('create --passkey: only its holders send, receive and remove it, given the passkey by $POSTBOX_PASSKEY or --passkey-file, never as an argument', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-pk-'));
  try {
    const made = await run(['create', 'pk-jobs', '--passkey']);
    assert.equal(made.code, 0, made.stderr);
    // A passkey keeps out only what the mode denies: the command line's 0666 would keep out no one.
    assert.match(made.stdout, /^created mailbox 'pk-jobs' \(#\d+\): .*, mode 0660\npasskey [0-9a-f]{32}\n$/);
    const key = /passkey ([0-9a-f]{32})/.exec(made.stdout)![1]!;
    const withKey = cliEnv({ POSTBOX_PASSKEY: key });
    const stranger = await run(['send', 'pk-jobs', 'forged']);
    assert.equal(stranger.code, 5, stranger.stderr);
    assert.match(
      stranger.stderr,
      /lacks the send right: its group is those it was handed to, with its passkey/,
    );
    const sent = await run(['send', 'pk-jobs', 'by env'], { env: withKey });
    assert.equal(sent.code, 0, sent.stderr);
    const file = join(dir, 'jobs.key');
    writeFileSync(file, `${key}\n`);
    const got = await run(['recv', 'pk-jobs', '--nowait', '--passkey-file', file]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout, 'by env\n');
    // The stat says it has one, and tells no one what it is.
    const stat = await run(['stat', 'pk-jobs']);
    assert.match(
      stat.stdout,
      /\n {2}passkey +yes: a process that opens it with its passkey joins its group\n/,
    );
    assert.match(stat.stdout, /its group \(the processes its passkey let in\) may act as owner/);
    const json = JSON.parse((await run(['stat', 'pk-jobs', '--json'])).stdout) as Record<string, unknown>;
    assert.equal(json.hasPasskey, true);
    assert.equal('passkey' in json, false);
    // $POSTBOX_PASSKEY left set is presented only where there is a passkey: other mailboxes open.
    assert.equal((await run(['create', 'pk-plain'])).code, 0);
    const plain = await run(['send', 'pk-plain', 'x'], { env: withKey });
    assert.equal(plain.code, 0, plain.stderr);
    // A file given is presented whatever the mailbox, and one that holds no passkey is said so.
    const wrong = join(dir, 'wrong.key');
    writeFileSync(wrong, 'not a key\n');
    for (const [args, message] of [
      [['send', 'pk-jobs', 'x', '--passkey-file', wrong], /'.*wrong\.key' does not hold a passkey/],
      [['recv', 'pk-jobs', '--passkey-file', join(dir, 'none')], /cannot read '.*none' \(ENOENT\)/],
      [['send', '--process', 'tester', 'x', '--passkey-file', file], /a process's inbox takes none/],
    ] as const) {
      const r = await run([...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    const bad = await run(['send', 'pk-jobs', 'x'], { env: cliEnv({ POSTBOX_PASSKEY: 'hunter2' }) });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /\$POSTBOX_PASSKEY is not a passkey/);
    // The ends of a pipe a library process made, handed to a command by its passkey.
    const p = await pipe(me);
    p.writer.end('through the pipe\n');
    const refused = await run(['fifo', 'read', `#${p.id}`]);
    assert.equal(refused.code, 5, refused.stderr);
    const read = await run(['fifo', 'read', `#${p.id}`], { env: cliEnv({ POSTBOX_PASSKEY: p.passkey }) });
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, 'through the pipe\n');
    p.reader.destroy();
    // Unowned now, it is its holders' to remove: a command that presents the passkey is one.
    const rmRefused = await run(['rm', 'pk-jobs']);
    assert.equal(rmRefused.code, 5);
    const rm = await run(['rm', 'pk-jobs', 'pk-plain'], { env: withKey });
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(await mailboxNamed('pk-jobs'), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('postbox passkey replaces a passkey, in its file (0600) or printed: the old one opens nothing; a mailbox without one gets its first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-pk-'));
  try {
    const file = join(dir, 'crew.key');
    const made = await run(['create', 'pk-crew', '--passkey-file', file, '--json']);
    assert.equal(made.code, 0, made.stderr);
    const info = JSON.parse(made.stdout) as Record<string, unknown>;
    assert.equal(info.hasPasskey, true);
    assert.equal('passkey' in info, false, 'written to the file, not printed');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const old = readFileSync(file, 'utf8');
    assert.match(old, /^[0-9a-f]{32}\n$/);
    assert.equal((await run(['send', 'pk-crew', 'one', '--passkey-file', file])).code, 0);

    const renewed = await run(['passkey', 'pk-crew', '--passkey-file', file]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(
      renewed.stdout,
      new RegExp(`^renewed the passkey of mailbox 'pk-crew' \\(#\\d+\\): it is in ${file}\n$`),
    );
    assert.equal(renewed.stderr, '', 'mode 0660: nothing to warn of');
    const fresh = readFileSync(file, 'utf8');
    assert.match(fresh, /^[0-9a-f]{32}\n$/);
    assert.notEqual(fresh, old);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f !== 'crew.key'),
      [],
      'no file left beside it',
    );
    const stale = await run(['recv', 'pk-crew', '--nowait'], {
      env: cliEnv({ POSTBOX_PASSKEY: old.trim() }),
    });
    assert.equal(stale.code, 5);
    assert.match(stale.stderr, /the passkey does not open it/);
    const got = await run(['recv', 'pk-crew', '--nowait'], {
      env: cliEnv({ POSTBOX_PASSKEY: fresh.trim() }),
    });
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout, 'one\n');
    // Without the passkey, not even an unowned mailbox's passkey may be replaced.
    const refused = await run(['passkey', 'pk-crew']);
    assert.equal(refused.code, 5);
    assert.equal(readFileSync(file, 'utf8'), fresh);

    // One made without: its first, printed alone, and a word on what its mode still lets in.
    assert.equal((await run(['create', 'pk-open'])).code, 0);
    const first = await run(['passkey', 'pk-open']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^[0-9a-f]{32}\n$/);
    assert.match(first.stderr, /mode 0666 lets any process send and receive without the passkey/);
    const s = await me.stat('pk-open');
    assert.equal(s.hasPasskey, true);
    // A library process's mailbox is its owner's alone.
    const owned = await me.createMailbox('pk-owned', { passkey: true });
    const notOwner = await run(['passkey', 'pk-owned'], {
      env: cliEnv({ POSTBOX_PASSKEY: owned.info.passkey! }),
    });
    assert.equal(notOwner.code, 5);
    assert.match(notOwner.stderr, /may not renew the passkey of mailbox 'pk-owned': only its owner/);
    assert.equal(await owned.passkey(), owned.info.passkey);
    await owned.delete();
    for (const [name, key] of [
      ['pk-open', first.stdout.trim()],
      ['pk-crew', fresh.trim()],
    ] as const)
      assert.equal((await run(['rm', name], { env: cliEnv({ POSTBOX_PASSKEY: key }) })).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chmod MODE NAME... changes who may send and receive, each name in turn: a send the new mode refuses exits 5, one it lets in goes', async () => {
  for (const name of ['cm-a', 'cm-b']) assert.equal((await run(['create', name])).code, 0);
  try {
    const closed = await run(['chmod', '640', 'cm-a', 'cm-none', 'cm-b', '--json']);
    // The one that is not there is said, and the exit code is its; the others are changed.
    assert.equal(closed.code, 4, closed.stderr);
    assert.match(closed.stderr, /^postbox chmod: no mailbox 'cm-none' \(ENOENT\)\n$/);
    const json = JSON.parse(closed.stdout) as { ref: string; mode?: number; error?: string }[];
    assert.deepEqual(
      json.map((e) => [e.ref, e.mode ?? e.error]),
      [
        ['cm-a', 0o640],
        ['cm-none', 'ENOENT'],
        ['cm-b', 0o640],
      ],
    );
    assert.equal((await me.stat('cm-b')).mode, 0o640);
    // Unowned, it has no owner for the first digit to let in, and no group: no one sends.
    const refused = await run(['send', 'cm-a', 'x']);
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, /\(EACCES\)/);
    const opened = await run(['chmod', '0662', 'cm-a']);
    assert.equal(opened.code, 0, opened.stderr);
    assert.equal(opened.stdout, '', 'silent, as chmod(1) is');
    assert.equal((await run(['send', 'cm-a', 'x'])).code, 0);
    const recv = await run(['recv', 'cm-a', '--nowait']);
    assert.equal(recv.code, 5, '0662 lets others send, not receive');
    // MODE as create --mode takes it, and a usage error otherwise, before any change.
    for (const args of [
      ['chmod', '68', 'cm-a'],
      ['chmod', '0o1000', 'cm-a'],
      ['chmod', 'rw', 'cm-a'],
      ['chmod', '640'],
      ['chmod'],
    ]) {
      const bad = await run(args);
      assert.equal(bad.code, 2, args.join(' '));
      assert.match(bad.stderr, /MODE must be three octal digits|missing (MODE and )?NAME/, args.join(' '));
      noStack(bad);
    }
    assert.equal((await me.stat('cm-a')).mode, 0o662);
    // A library process's mailbox is its owner's to change.
    const owned = await me.createMailbox('cm-owned', { mode: 0o662 });
    try {
      const notOwner = await run(['chmod', '666', 'cm-owned']);
      assert.equal(notOwner.code, 5);
      assert.match(notOwner.stderr, /may not change the mode of mailbox 'cm-owned': only its owner/);
      assert.equal((await owned.stat()).mode, 0o662);
    } finally {
      await owned.delete();
    }
  } finally {
    await run(['rm', 'cm-a', 'cm-b']);
  }
});

test('grant NAME PROCESS... lets a process send and receive where the mode let it not, while it lives; revoke takes it away', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-gr-'));
  const worker = await connect({ socket: k.socket, name: 'gr-worker' });
  try {
    assert.equal((await run(['create', 'gr-jobs', '--mode', '0660'])).code, 0);
    const jobs = await worker.openMailbox('gr-jobs');
    await assert.rejects(jobs.send('before'), { code: 'EACCES' });
    // Each process in turn: one that is not connected is said (exit 4), the other is granted.
    const granted = await run(['grant', 'gr-jobs', 'gr-nobody', 'gr-worker', '--json']);
    assert.equal(granted.code, 4, granted.stderr);
    assert.match(granted.stderr, /^postbox grant: no process named 'gr-nobody' \(ESRCH\)\n$/);
    const json = JSON.parse(granted.stdout) as Record<string, unknown>[];
    assert.deepEqual(json[0], {
      ref: 'gr-nobody',
      error: 'ESRCH',
      message: "no process named 'gr-nobody'",
    });
    assert.equal(json[1]!.process, worker.id);
    assert.equal(json[1]!.name, 'gr-worker');
    assert.deepEqual(json[1]!.group, [worker.id]);
    await jobs.send('job');
    assert.equal((await jobs.receive({ nowait: true }))?.body, 'job');
    // By id, as ps shows it; at once, for the process's next send.
    const revoked = await run(['revoke', 'gr-jobs', String(worker.id)]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.stdout, '');
    await assert.rejects(jobs.send('after'), { code: 'EACCES' });
    assert.deepEqual((await me.stat('gr-jobs')).group, []);

    // Usage errors before anything is asked; an unknown mailbox is exit 4.
    for (const [args, code, message] of [
      [['grant', 'gr-jobs'], 2, /missing PROCESS/],
      [['revoke'], 2, /missing NAME and PROCESS/],
      [['grant', 'gr-jobs', '0'], 2, /PROCESS: 0 is no process id/],
      [['grant', 'gr-jobs', ''], 2, /PROCESS needs a process name or id/],
      [['grant', 'gr-nothere', 'gr-worker'], 4, /no mailbox 'gr-nothere' \(ENOENT\)/],
      [['revoke', 'gr-jobs', '999999'], 4, /no process 999999 \(ESRCH\)/],
    ] as const) {
      const r = await run([...args]);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      noStack(r);
    }

    // A library process's mailbox is its owner's: the command is refused, nothing changes.
    const owned = await me.createMailbox('gr-owned', { mode: 0o660 });
    try {
      for (const op of ['grant', 'revoke']) {
        const r = await run([op, 'gr-owned', 'gr-worker']);
        assert.equal(r.code, 5, r.stderr);
        assert.match(r.stderr, /only its owner, process \d+ \('tester'\), may \(EACCES\)/);
      }
      assert.deepEqual((await owned.stat()).group, []);
    } finally {
      await owned.delete();
    }

    // One with a passkey is its group's to manage: the command presents the passkey.
    const file = join(dir, 'gr.key');
    assert.equal((await run(['create', 'gr-pk', '--passkey-file', file])).code, 0);
    const without = await run(['grant', 'gr-pk', 'gr-worker']);
    assert.equal(without.code, 5, without.stderr);
    const withKey = await run(['grant', 'gr-pk', 'gr-worker', '--passkey-file', file]);
    assert.equal(withKey.code, 0, withKey.stderr);
    const pk = await worker.openMailbox('gr-pk');
    await pk.send('in');
    assert.equal((await pk.receive({ nowait: true }))?.body, 'in');
    const chmodded = await run(['chmod', '600', 'gr-pk'], {
      env: cliEnv({ POSTBOX_PASSKEY: readFileSync(file, 'utf8').trim() }),
    });
    assert.equal(chmodded.code, 0, chmodded.stderr);
    await assert.rejects(pk.send('no more'), { code: 'EACCES' });
    // The grant ends with its process.
    await worker.close();
    await until(
      async () => (await me.stat('gr-pk')).group,
      (g) => g.length === 0,
      10_000,
      "gr-worker out of gr-pk's group once it has ended",
    );
    assert.equal(
      (await run(['rm', 'gr-pk'], { env: cliEnv({ POSTBOX_PASSKEY: readFileSync(file, 'utf8').trim() }) }))
        .code,
      0,
    );
  } finally {
    await worker.close().catch(() => {});
    await run(['rm', 'gr-jobs']);
    rmSync(dir, { recursive: true, force: true });
  }
});
