import { PostboxError } from '../protocol/errors.js';
import { printJson } from './common.js';
import { printDiagnostic } from './diagnostic.js';
import { Exit, exitCodeFor } from './exit-codes.js';

/**
 * Runs `act` on each mailbox named, in turn, as `rm NAME...` and `chmod MODE NAME...` do: a
 * refusal is said and recorded for its NAME alone and the next is tried, so one mistyped name
 * does not leave the rest undone; the exit code is the first refusal's. With `json`, what was
 * done to each (what `act` answers) or why not, as one array.
 *
 * @example
 * ```ts
 * return forEachMailbox('rm', refs, values.json === true, async (ref) => ({ id: (await findMailbox(proc, ref)).id }));
 * ```
 */
export async function forEachMailbox(
  command: string,
  refs: readonly string[],
  json: boolean,
  act: (ref: string) => Promise<Record<string, unknown>>,
): Promise<number> {
  let code: number = Exit.OK;
  const done: Record<string, unknown>[] = [];
  for (const ref of refs) {
    try {
      done.push({ ref, ...(await act(ref)) });
    } catch (err) {
      if (!(err instanceof PostboxError)) throw err;
      printDiagnostic(command, `${err.message} (${err.code})`);
      done.push({ ref, error: err.code, message: err.message });
      if (code === Exit.OK) code = exitCodeFor(err);
    }
  }
  if (json) printJson(done);
  return code;
}
