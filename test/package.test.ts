/**
 * The package as another project gets it from `npm pack`: what the tarball holds, that every
 * entry point in package.json "exports" loads as an installed package would (import and
 * require). Offline and fast:
 * `npm pack --dry-run --ignore-scripts` lists the files without building or writing anything.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

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
