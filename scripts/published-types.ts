/**
 * The declaration files a user's editor reads (dist/src/**\/*.d.ts) show the public API alone.
 * Members marked `@internal` are the library's own wiring between its modules (a mailbox's
 * `deliver`, a send promise's `resolve`): public to TypeScript so that the hot path pays no
 * indirection for them, but not for users. Run by `prepack`, after tsc, over the built files:
 *
 * - an `@internal` member, or an exported `@internal` declaration, is removed;
 * - an `@internal` constructor becomes `private constructor();`: the class cannot be made or
 *   extended from outside, which is the truth. (tsc's own `stripInternal` removes it, which
 *   leaves the implicit public constructor of no arguments: `new Mailbox()` type-checked.)
 *
 *   node dist/scripts/published-types.js [DIR]   (default: dist/src of this package)
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const isInternal = (node: ts.Node): boolean =>
  ts.getJSDocTags(node).some((t) => t.tagName.text === 'internal');

/** A class's members as a user sees them: see the file's comment. */
function publicMembers(members: ts.NodeArray<ts.ClassElement>): ts.ClassElement[] {
  const out: ts.ClassElement[] = [];
  for (const m of members) {
    if (!isInternal(m)) out.push(m);
    else if (ts.isConstructorDeclaration(m))
      out.push(
        ts.factory.createConstructorDeclaration(
          [ts.factory.createModifier(ts.SyntaxKind.PrivateKeyword)],
          [],
          undefined,
        ),
      );
  }
  return out;
}

/** The text of one declaration file without what is marked `@internal`. */
export function withoutInternal(fileName: string, text: string): string {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const statements: ts.Statement[] = [];
  let changed = false;
  for (const s of source.statements) {
    if (isInternal(s)) {
      changed = true;
      continue;
    }
    if (ts.isClassDeclaration(s) && s.members.some(isInternal)) {
      changed = true;
      statements.push(
        ts.factory.updateClassDeclaration(
          s,
          s.modifiers,
          s.name,
          s.typeParameters,
          s.heritageClauses,
          publicMembers(s.members),
        ),
      );
    } else if (ts.isInterfaceDeclaration(s) && s.members.some(isInternal)) {
      changed = true;
      statements.push(
        ts.factory.updateInterfaceDeclaration(
          s,
          s.modifiers,
          s.name,
          s.typeParameters,
          s.heritageClauses,
          s.members.filter((m) => !isInternal(m)),
        ),
      );
    } else statements.push(s);
  }
  if (!changed) return text;
  const printer = ts.createPrinter({ newLine: ts.NewLineKind.LineFeed });
  return printer.printFile(ts.factory.updateSourceFile(source, statements));
}

function* declarationFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* declarationFiles(path);
    else if (entry.name.endsWith('.d.ts')) yield path;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? fileURLToPath(new URL('../src/', import.meta.url));
  for (const file of declarationFiles(dir)) {
    const text = readFileSync(file, 'utf8');
    const out = withoutInternal(file, text);
    if (out !== text) writeFileSync(file, out);
  }
}
