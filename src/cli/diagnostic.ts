/**
 * The one way the command line writes to standard error: `postbox <command>: <message>`, so in a
 * pipeline of postbox commands the line says which one is speaking. Before a command is known
 * (`postbox frobnicate`) it is `postbox: <message>`.
 */
export function printDiagnostic(command: string | null, message: string): void {
  process.stderr.write(`${command === null ? 'postbox' : `postbox ${command}`}: ${message}\n`);
}
