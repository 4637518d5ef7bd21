import {
  type ChildProcess,
  type SpawnOptions as ChildSpawnOptions,
  spawn as spawnChild,
} from 'node:child_process';
import type { Mailbox } from '../client/mailbox.js';
import { checkOptions, describeValue, type OptionNames } from '../client/option-names.js';
import { badProcess } from '../client/option-values.js';
import type { PostboxProcess } from '../client/process.js';
import {
  InvalidArgumentError,
  NotFoundError,
  PermissionError,
  PostboxError,
  ProtocolError,
} from '../protocol/errors.js';
import { waitForReader } from './fifo.js';
import { PIPE_BYTES, PipeReader, PipeWriter } from './pipe-end.js';

export { PipeReader, PipeWriter };

/** Environment variable through which a child that uses Postbox takes its pipe end. */
export const PIPE_ENV = 'POSTBOX_PIPE';

/** An anonymous pipe: a one-way link, a write end and a read end. */
export interface Pipe {
  /** Mailbox id of the pipe (what a child is handed). */
  readonly id: number;
  /**
   * What opens it: another process that opens the pipe's id with `{ passkey }` may use its ends
   * (the id alone is refused, EACCES). spawn() hands it to a child in `POSTBOX_PIPE`.
   */
  readonly passkey: string;
  readonly reader: PipeReader;
  readonly writer: PipeWriter;
}

/**
 * Creates an anonymous pipe: a mailbox with no name that ends (end of file) when its last
 * writer closes and goes away when its last end closes.
 *
 * @example
 * ```ts
 * const p = await pipe(proc);
 * p.writer.end('hello');
 * for await (const chunk of p.reader) console.log(String(chunk));
 * ```
 */
export async function pipe(proc: PostboxProcess): Promise<Pipe> {
  const badProc = badProcess(proc, 'pipe()');
  if (badProc !== null) throw badProc;
  const writeEnd = await pipeMailbox(proc, 'write');
  const readEnd = await proc.openMailbox(writeEnd.id, { role: 'read' });
  return {
    id: writeEnd.id,
    passkey: passkeyOf(writeEnd),
    reader: new PipeReader(readEnd),
    writer: new PipeWriter(writeEnd),
  };
}

/** A new anonymous pipe's mailbox, with this process's first handle on it in `role`. */
function pipeMailbox(proc: PostboxProcess, role: 'read' | 'write'): Promise<Mailbox> {
  return proc.createMailbox(null, {
    endOnLastWriter: true,
    transient: true,
    system: true,
    maxBytes: PIPE_BYTES,
    // Its ends are its creator's and its group's: those who opened it with its passkey, as a
    // child is handed a descriptor. Ids are small counted numbers; 0o666 let any process guess
    // one and read or write the pipe.
    mode: 0o660,
    passkey: true,
    role,
  });
}

/** The passkey a pipe's mailbox was made with: it is how the pipe's ends reach anyone else. */
function passkeyOf(mb: Mailbox): string {
  const passkey = mb.info.passkey;
  if (passkey === undefined)
    throw new ProtocolError(`the kernel made pipe ${mb.id} without the passkey it was asked for`, {
      mailbox: `#${mb.id}`,
    });
  return passkey;
}

/** Options of {@link spawn}. */
export interface SpawnOptions {
  /** The child uses Postbox and opens its end itself (`POSTBOX_PIPE`, {@link pipeFromEnv}). */
  handOver?: boolean | undefined;
  /** The child's environment (default this process's). */
  env?: NodeJS.ProcessEnv | undefined;
  /** The child's working directory. */
  cwd?: string | undefined;
}

const SPAWN_OPTIONS: OptionNames<SpawnOptions> = { handOver: true, env: true, cwd: true };

/** What {@link spawn} gives back: the parent's end of the pipe and the child. */
export interface SpawnedPipe {
  /** With mode 'r': the child's output. */
  readonly reader: PipeReader | null;
  /** With mode 'w': the child's input. */
  readonly writer: PipeWriter | null;
  readonly child: ChildProcess;
  /** Waits for the child to exit (like pclose/waitpid). */
  wait(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * popen(3): starts a program with its standard output (`'r'`) or standard input (`'w'`) joined to
 * a Postbox pipe. Any program works: its bytes pass through the pipe's mailbox. A child that
 * itself uses Postbox can take its end directly instead (`{ handOver: true }`): it finds the
 * pipe in `POSTBOX_PIPE` and opens it with {@link pipeFromEnv}.
 *
 * @example
 * ```ts
 * const ls = await spawn(proc, 'ls', ['-la'], 'r');
 * ls.reader.pipe(process.stdout); // mode 'r': the reader, never null
 * console.log(await ls.wait()); // { code: 0, signal: null }
 * ```
 */
export async function spawn(
  proc: PostboxProcess,
  command: string,
  args: readonly string[],
  mode: 'r',
  options?: SpawnOptions,
): Promise<SpawnedPipe & { readonly reader: PipeReader; readonly writer: null }>;
export async function spawn(
  proc: PostboxProcess,
  command: string,
  args: readonly string[],
  mode: 'w',
  options?: SpawnOptions,
): Promise<SpawnedPipe & { readonly reader: null; readonly writer: PipeWriter }>;
export async function spawn(
  proc: PostboxProcess,
  command: string,
  args: readonly string[],
  mode: 'r' | 'w',
  options: SpawnOptions = {},
): Promise<SpawnedPipe> {
  const badProc = badProcess(proc, 'spawn()');
  if (badProc !== null) throw badProc;
  checkCommand(command, args);
  if (mode !== 'r' && mode !== 'w')
    throw new InvalidArgumentError(`spawn(): mode must be 'r' or 'w', not ${describeValue(mode)}`);
  // { handover: true } was ignored: the child got its output through a plain pipe, not its end.
  checkOptions(options, SPAWN_OPTIONS, 'spawn()');
  if (options.handOver === true) return spawnHandingOver(proc, command, args, mode, options);
  const p = await pipe(proc);
  const child = startChild(
    command,
    args,
    {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: mode === 'r' ? ['inherit', 'pipe', 'inherit'] : ['pipe', 'inherit', 'inherit'],
    },
    [p.reader, p.writer],
  );
  const exited = exitOf(child);
  try {
    await started(child);
  } catch (err) {
    // It never ran (no such command): neither end of the pipe has anyone to serve.
    p.reader.destroy();
    p.writer.destroy();
    throw couldNotRun(command, err as NodeJS.ErrnoException);
  }
  let reader: PipeReader | null = null;
  let writer: PipeWriter | null = null;
  if (mode === 'r') {
    reader = p.reader;
    child.stdout!.pipe(p.writer);
    // The reader stopped early (a loop that breaks): as with popen, the child's next write
    // meets a closed pipe (EPIPE, SIGPIPE) instead of this process an unhandled 'error'.
    p.writer.on('error', () => child.stdout!.destroy());
  } else {
    writer = p.writer;
    p.reader.pipe(child.stdin!);
    // The child is gone or stopped reading: the read end closes, so writes fail with EPIPE
    // rather than fill the pipe and wait for a reader that will never come.
    const closeReadEnd = (): void => void p.reader.destroy();
    child.stdin!.on('error', closeReadEnd);
    child.once('exit', closeReadEnd);
  }
  return { reader, writer, child, wait: () => exited };
}

/**
 * spawn() with `handOver`: the child opens the other end itself. With mode 'r' this process
 * holds only the read end, as popen's parent closes the child's end after fork, so the reader
 * sees end of file when the child closes its write end, not only when the child exits; a child
 * that exits without ever opening it leaves that to us: we open the write end and close it at
 * once, which ends the pipe as the child's close would have. With mode 'w' this process also
 * holds a read handle from the start, so that writes made before the child opens its end wait
 * for it rather than fail EPIPE; it lets go once the child's read end is open (the kernel says
 * when another reader opens), so a child that closes its end and works on fails the writer
 * with EPIPE then, as popen's would, not at its exit. A child that never opens it: at its exit.
 */
async function spawnHandingOver(
  proc: PostboxProcess,
  command: string,
  args: readonly string[],
  mode: 'r' | 'w',
  options: SpawnOptions,
): Promise<SpawnedPipe> {
  let reader: PipeReader | null = null;
  let writer: PipeWriter | null = null;
  let id: number;
  let passkey: string;
  if (mode === 'r') {
    const ours = await pipeMailbox(proc, 'read');
    reader = new PipeReader(ours);
    id = ours.id;
    passkey = passkeyOf(ours);
  } else {
    const p = await pipe(proc);
    writer = p.writer;
    reader = p.reader;
    id = p.id;
    passkey = p.passkey;
  }
  // The pipe's id means something only in this kernel: the child is sent to it, and told which
  // kernel that is, so that it never opens whatever has that id in another (data written into a
  // stranger's mailbox, both sides exiting 0).
  const conn = proc.conn;
  const env = { ...(options.env ?? process.env) };
  const { pid, instance } = conn.info.kernel;
  env[PIPE_ENV] = `${id}:${mode === 'r' ? 'w' : 'r'}:${pid}:${instance ?? ''}:${passkey}`;
  env.POSTBOX_URL = conn.transport === 'tcp' ? conn.address : `unix:${conn.address}`;
  // And over TCP, with the token this process joined with: it may have come from
  // connect({ token }), not from an environment the child inherits.
  if (conn.token !== null) env.POSTBOX_TOKEN = conn.token;
  const child = startChild(command, args, { env, cwd: options.cwd, stdio: 'inherit' }, [reader, writer]);
  const exited = exitOf(child);
  try {
    await started(child);
  } catch (err) {
    reader.destroy();
    writer?.destroy();
    throw couldNotRun(command, err as NodeJS.ErrnoException);
  }
  if (mode === 'w') {
    const held = reader;
    const exit = new AbortController();
    child.once('exit', () => {
      exit.abort();
      held.destroy();
    });
    // Rejected at the child's exit (aborted), or when the pipe goes first: held is let go then.
    waitForReader(proc, writer!.mailbox, exit.signal, 1).then(
      () => held.destroy(),
      () => {},
    );
    return { reader: null, writer, child, wait: () => exited };
  }
  child.once('exit', () => {
    // Rejected when the pipe is gone already (our end closed, and the child's).
    proc.openMailbox(id, { role: 'write' }).then(
      (end) => void end.close(),
      () => {},
    );
  });
  return { reader, writer: null, child, wait: () => exited };
}

/**
 * The command and its arguments, checked before a pipe is made for them: Node's own check, in
 * spawnChild, came after, a TypeError that left the pipe's mailbox in the kernel.
 */
function checkCommand(command: unknown, args: unknown): void {
  if (typeof command !== 'string' || command === '')
    throw new InvalidArgumentError(
      `spawn(): the command must be a non-empty string, not ${describeValue(command)}`,
    );
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string'))
    throw new InvalidArgumentError(
      `spawn(): args must be an array of strings (${command}'s arguments), not ${describeValue(args)}`,
    );
}

/**
 * Starts the child. What Node refuses at once (a `cwd` that is not a string, a NUL in an
 * argument) is EINVAL with Node's error as its cause, and the pipe's ends, nobody's now, close.
 */
function startChild(
  command: string,
  args: readonly string[],
  options: ChildSpawnOptions,
  ends: (PipeReader | PipeWriter | null)[],
): ChildProcess {
  try {
    return spawnChild(command, args, options);
  } catch (err) {
    for (const end of ends) end?.destroy();
    throw new InvalidArgumentError(
      `spawn(): cannot run '${command}': ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
}

/** The child's exit, for wait(); unawaited, a failure must not be an unhandled rejection. */
function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  exited.catch(() => {});
  return exited;
}

/** Resolves once the child runs; rejects if it could not be started. */
function started(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
}

/** Why a command could not be started, as a Postbox error where the OS's code has one. */
function couldNotRun(command: string, err: NodeJS.ErrnoException): Error {
  const message = `cannot run '${command}': ${err.message}`;
  if (err.code === 'ENOENT') return new NotFoundError(message);
  if (err.code === 'EACCES') return new PermissionError(message);
  return err;
}

/**
 * In a child started with `spawn(…, { handOver: true })`: opens the end of the pipe it was
 * handed, or returns null if it was handed none.
 */
export async function pipeFromEnv(
  proc: PostboxProcess,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PipeReader | PipeWriter | null> {
  const badProc = badProcess(proc, 'pipeFromEnv()');
  if (badProc !== null) throw badProc;
  const value = env[PIPE_ENV];
  if (value === undefined) return null;
  const m = /^(\d+):([rw])(?::(\d+)(?::([0-9a-f]*)(?::([0-9a-f]+))?)?)?$/.exec(value);
  if (m === null)
    throw new InvalidArgumentError(
      `${PIPE_ENV}='${value}' is not ID:r or ID:w (then :KERNEL-PID, then :KERNEL-INSTANCE, then :PASSKEY)`,
    );
  const { pid: kernel, instance } = proc.conn.info.kernel;
  if (m[3] !== undefined && Number(m[3]) !== kernel)
    throw new InvalidArgumentError(
      `${PIPE_ENV} hands over pipe ${m[1]} of the kernel with pid ${m[3]}, but this process joined the kernel with pid ${kernel} at ${proc.conn.address}: join the parent's kernel ($POSTBOX_URL, as spawn() sets it)`,
    );
  // Same pid, another kernel: the parent's was restarted (a container's first process has the
  // same pid each time) before the child joined, and the new one has other mailboxes under the
  // pipe's id.
  if (m[4] !== undefined && m[4] !== '' && instance !== undefined && m[4] !== instance)
    throw new InvalidArgumentError(
      `${PIPE_ENV} hands over pipe ${m[1]} of a kernel that is no longer running at ${proc.conn.address} (it was restarted): the pipe went with it`,
    );
  const role = m[2] === 'r' ? 'read' : 'write';
  // Without its passkey only the pipe's creator may open it: say what is missing, not just EACCES.
  if (m[5] === undefined) {
    try {
      return wrapEnd(await proc.openMailbox(Number(m[1]), { role }), role);
    } catch (err) {
      if (err instanceof PostboxError && err.code === 'EACCES')
        throw new PermissionError(
          `${PIPE_ENV}='${value}' hands over pipe ${m[1]} without its passkey (ID:r:KERNEL-PID:KERNEL-INSTANCE:PASSKEY, as spawn() writes it); only the pipe's creator may open it by id alone`,
          { mailbox: `#${m[1]}` },
          { cause: err },
        );
      throw err;
    }
  }
  return wrapEnd(await proc.openMailbox(Number(m[1]), { role, passkey: m[5] }), role);
}

function wrapEnd(mb: Mailbox, role: 'read' | 'write'): PipeReader | PipeWriter {
  return role === 'read' ? new PipeReader(mb) : new PipeWriter(mb);
}
