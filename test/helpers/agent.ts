import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const AGENT = fileURLToPath(new URL('../fixtures/agent.js', import.meta.url));

/** A reply or event printed by an agent. */
export interface AgentEvent {
  id?: string;
  event: string;
  [key: string]: unknown;
}

/**
 * A real client process (test/fixtures/agent.ts) driven by JSON commands: each `do()` writes
 * one command and resolves with the agent's answer to it. Events not tied to a waiting call
 * (messages from `consume`, monitor notices) are kept in `events`.
 */
export class Agent {
  readonly proc: ChildProcess;
  readonly events: AgentEvent[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private nextId = 1;
  private readonly waiting = new Map<string, (e: AgentEvent) => void>();
  private readonly watchers = new Set<() => void>();
  private stderr = '';

  /** @param fixture the compiled agent script to run; default test/fixtures/agent.ts's. */
  constructor(env: NodeJS.ProcessEnv, fixture: string = AGENT) {
    this.proc = spawn(process.execPath, [fixture], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let e: AgentEvent;
      try {
        e = JSON.parse(line) as AgentEvent;
      } catch {
        return;
      }
      const waiter = e.id === undefined || e.event === 'message' ? undefined : this.waiting.get(e.id);
      if (waiter !== undefined) {
        this.waiting.delete(e.id!);
        waiter(e);
      } else {
        this.events.push(e);
      }
      for (const w of this.watchers) w();
    });
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        // Commands still waiting will never be answered: settle them as 'exited'.
        for (const [id, waiter] of this.waiting) waiter({ id, event: 'exited', code, signal });
        this.waiting.clear();
        resolve({ code, signal });
      }),
    );
  }

  /** Sends a command; resolves with the agent's answer (event 'ok' or 'error'). */
  do(command: Record<string, unknown>, timeoutMs = 20_000): Promise<AgentEvent> {
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new Error(
            `agent did not answer ${JSON.stringify(command)} in ${timeoutMs} ms; stderr: ${this.stderr}`,
          ),
        );
      }, timeoutMs);
      this.waiting.set(id, (e) => {
        clearTimeout(timer);
        resolve(e);
      });
      this.proc.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  }

  /**
   * Starts a command without waiting for its answer; returns a promise of it. A command left
   * running on purpose (a consumer that outlives the test, until the agent stops) must not fail
   * the file when its timeout passes later: only a caller that awaits the promise sees that.
   */
  start(command: Record<string, unknown>, timeoutMs = 20_000): Promise<AgentEvent> {
    const answer = this.do(command, timeoutMs);
    answer.catch(() => {});
    return answer;
  }

  /** Resolves when `events` satisfies the predicate (checked on every new line). */
  waitFor(predicate: (events: AgentEvent[]) => boolean, timeoutMs = 20_000): Promise<void> {
    if (predicate(this.events)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate(this.events)) return;
        this.watchers.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(
          new Error(
            `condition not met in ${timeoutMs} ms; ${this.events.length} events; stderr: ${this.stderr}`,
          ),
        );
      }, timeoutMs);
      this.watchers.add(check);
    });
  }

  /** Messages received by `consume` commands, in order. */
  messages(): AgentEvent[] {
    return this.events.filter((e) => e.event === 'message');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }

  /** Asks the agent to close its connection and exit; kills it if it does not. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Starts an agent and connects it to the kernel. */
export async function startAgent(
  env: NodeJS.ProcessEnv,
  connect: Record<string, unknown> = {},
): Promise<Agent & { pid: number }> {
  const agent = new Agent(env);
  const r = await agent.do({ cmd: 'connect', ...connect });
  if (r.event !== 'ok') {
    await agent.kill();
    throw new Error(`agent could not connect: ${JSON.stringify(r)}`);
  }
  return Object.assign(agent, { pid: r.process as number });
}
