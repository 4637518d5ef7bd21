/**
 * Every name a user can import has TSDoc: an editor shows it on hover, and it is what the
 * docs point at. The entry points are read from package.json's "exports", and each export's
 * documentation is looked up in the built .d.ts files, as a user's editor would.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
  exports: Record<string, { types: string }>;
};

test('every export of every entry point in package.json has TSDoc', () => {
  const entries = Object.entries(pkg.exports).map(([name, e]) => ({ name, file: `${root}${e.types}` }));
  const program = ts.createProgram(
    entries.map((e) => e.file),
    {
      strict: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
    },
  );
  const checker = program.getTypeChecker();
  const undocumented: string[] = [];
  for (const { name, file } of entries) {
    const source = program.getSourceFile(file);
    assert.ok(source, `${file} (package.json exports '${name}') was not built`);
    const module = checker.getSymbolAtLocation(source);
    assert.ok(module, `${file} is not a module`);
    for (const symbol of checker.getExportsOfModule(module)) {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      const doc = ts.displayPartsToString(target.getDocumentationComment(checker)).trim();
      if (doc === '')
        undocumented.push(`${name === '.' ? 'postbox' : `postbox/${name.slice(2)}`}: ${symbol.name}`);
    }
  }
  assert.deepEqual(undocumented, [], `exports without TSDoc:\n${undocumented.join('\n')}`);
});
