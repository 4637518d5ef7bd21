import { isControl } from '../protocol/names.js';

/**
 * The one way the command line writes to standard error: `postbox <command>: <message>`, so in a
 * pipeline of postbox commands the line says which one is speaking. Before a command is known
 * (`postbox frobnicate`) it is `postbox: <message>`.
 */
export function printDiagnostic(command: string | null, message: string): void {
  process.stderr.write(
    `${command === null ? 'postbox' : `postbox ${command}`}: ${withoutControls(message)}\n`,
  );
}

/**
 * The message with its control characters (but line breaks and tabs) written as escapes: it may
 * quote what the user typed, a name or an option, and an escape sequence in that must not drive
 * the terminal it is shown on.
 */
function withoutControls(message: string): string {
  let out = '';
  for (const c of message) {
    const code = c.charCodeAt(0);
    const control = isControl(code) && c !== '\n' && c !== '\t';
    out += control ? `\\u${code.toString(16).padStart(4, '0')}` : c;
  }
  return out;
}
