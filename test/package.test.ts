/**
 * The package as another project gets it from `npm pack`: what the tarball holds, that every
 * entry point in package.json "exports" loads as an installed package would (import and
 * require), and that the options a user passes can be named by an import. Offline and fast:
 * `npm pack --dry-run --ignore-scripts` lists the files without building or writing anything.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
  name: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string }>;
};
/** 'postbox', 'postbox/pipe', …: what a user writes in an import. */
const specifiers = Object.keys(pkg.exports).map((k) => (k === '.' ? pkg.name : `${pkg.name}/${k.slice(2)}`));

test('npm pack ships the built library, its docs and licence, and nothing else', async () => {
  const { stdout } = await promisify(execFile)(
    'npm',
    ['pack', '--dry-run', '--json', '--ignore-scripts', '--offline'],
    { cwd: root, timeout: 60_000 },
  );
  const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = new Set(packed.files.map((f) => f.path));
  // Tests, benchmarks, examples and source maps stay home: the maps point at src/*.ts, which is
  // not shipped, so a bundler or debugger that follows them reports missing files.
  const stray = [...files].filter(
    (f) =>
      !/^dist\/src\/.+\.(js|d\.ts)$/.test(f) &&
      !/^docs\/[\w.-]+\.(md|svg)$/.test(f) &&
      !['package.json', 'README.md', 'LICENSE'].includes(f),
  );
  assert.deepEqual(stray, [], `files npm pack would ship but should not:\n${stray.join('\n')}`);
  assert.ok(files.has('LICENSE'), 'the MIT licence text ships with the code');
  const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin)].concat(
    ...Object.values(pkg.exports).map((e) => [e.types, e.default]),
  );
  const missing = targets.map((t) => t.replace(/^\.\//, '')).filter((t) => !files.has(t));
  assert.deepEqual(missing, [], `package.json points at files npm pack leaves out:\n${missing.join('\n')}`);
  // README's links to docs/ work in the installed copy too.
  const linked = [...readFileSync(`${root}README.md`, 'utf8').matchAll(/\]\((docs\/[^)#\s]+)/g)].map(
    (m) => m[1],
  );
  assert.ok(linked.length > 0, 'README links to docs/');
  for (const doc of linked) assert.ok(files.has(doc!), `README links to ${doc}, which npm pack leaves out`);
  const bin = readFileSync(`${root}${Object.values(pkg.bin)[0]}`, 'utf8');
  assert.match(bin, /^#!\/usr\/bin\/env node\n/, 'the postbox command runs with node when installed');
});

test('every entry point in package.json "exports" loads by import, as an installed package', async () => {
  // Inside the package, its own name resolves through "exports" as it does from node_modules.
  for (const s of specifiers) {
    const module = (await import(s)) as Record<string, unknown>;
    assert.ok(Object.keys(module).length > 0, `${s} exports nothing`);
  }
});

test('every entry point loads by require() from CommonJS, where Node can require ES modules', {
  skip: process.features.require_module
    ? false
    : 'this Node cannot require() an ES module (20.19 or later can)',
}, async () => {
  // require() of an ES module fails (ERR_REQUIRE_ASYNC_MODULE) if any module it loads has a
  // top-level await: this keeps every entry point loadable from a CommonJS project.
  const require = createRequire(import.meta.url);
  for (const s of specifiers) {
    const required = require(s) as Record<string, unknown>;
    const imported = (await import(s)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(required).sort(), Object.keys(imported).sort(), s);
  }
});

test('an options bag of two or more options in the public API is a type the user can import', () => {
  const program = ts.createProgram(
    Object.values(pkg.exports).map((e) => `${root}${e.types}`),
    {
      strict: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
    },
  );
  const checker = program.getTypeChecker();
  const unnamed: string[] = [];
  const hidden = (m: ts.Node): boolean =>
    (ts.canHaveModifiers(m) &&
      (ts.getModifiers(m) ?? []).some((k) => k.kind === ts.SyntaxKind.PrivateKeyword)) ||
    ts.getJSDocTags(m).some((t) => t.tagName.text === 'internal');
  const check = (fn: ts.SignatureDeclarationBase, where: string): void => {
    for (const p of fn.parameters) {
      // An inline `{ a?: …; b?: … }`, alone or in a union: a wrapper that passes options on
      // would have to spell it out again, or dig it out with Parameters<…>.
      const literal = (t: ts.TypeNode | undefined): boolean =>
        t !== undefined &&
        ((ts.isTypeLiteralNode(t) && t.members.length > 1) ||
          (ts.isUnionTypeNode(t) && t.types.some(literal)));
      if (literal(p.type)) unnamed.push(`${where}(${p.name.getText()})`);
    }
  };
  const seen = new Set<ts.Symbol>();
  for (const [entry, e] of Object.entries(pkg.exports)) {
    const module = checker.getSymbolAtLocation(program.getSourceFile(`${root}${e.types}`)!);
    assert.ok(module, `${e.types} is not a module`);
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (seen.has(symbol)) continue;
      seen.add(symbol);
      const where = `${entry === '.' ? pkg.name : `${pkg.name}/${entry.slice(2)}`}: ${symbol.name}`;
      for (const d of symbol.declarations ?? []) {
        if (ts.isFunctionDeclaration(d)) check(d, where);
        if (ts.isClassDeclaration(d) || ts.isInterfaceDeclaration(d))
          for (const m of d.members)
            if (
              (ts.isMethodDeclaration(m) || ts.isMethodSignature(m) || ts.isConstructorDeclaration(m)) &&
              !hidden(m)
            )
              check(m, `${where}.${m.name?.getText() ?? 'constructor'}`);
      }
    }
  }
  assert.deepEqual(unnamed, [], `options typed inline, with no exported name:\n${unnamed.join('\n')}`);
});
