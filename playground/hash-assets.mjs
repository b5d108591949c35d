#!/usr/bin/env node
// Refreshes playground/assets.json from the installed packages in
// playground/node_modules: each entry's "version" is taken from the installed
// package and its "integrity" is the SRI sha384 of the installed file bytes
// (byte-identical to https://cdn.jsdelivr.net/npm/<package>@<version>/<file>).
//
//   npm ci --prefix playground && node playground/hash-assets.mjs
//   node playground/hash-assets.mjs --check   # verify only, exit 1 on drift
//
// The list of files and their load order stay as written in assets.json.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const manifestPath = join(here, 'assets.json');
const pkgJson = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const pinned = { ...pkgJson.dependencies, ...pkgJson.devDependencies };
const checkOnly = process.argv.includes('--check');

const assets = JSON.parse(readFileSync(manifestPath, 'utf8'));
const problems = [];
const updated = assets.map((a) => {
  const pkgDir = join(here, 'node_modules', a.package);
  const file = join(pkgDir, a.file);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run \`npm ci --prefix playground\` first`);
  }
  const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
  if (pinned[a.package] && pinned[a.package] !== version) {
    throw new Error(
      `${a.package}: package.json pins ${pinned[a.package]} but ${version} is installed: run \`npm ci --prefix playground\``,
    );
  }
  const integrity = 'sha384-' + createHash('sha384').update(readFileSync(file)).digest('base64');
  if (a.version !== version || a.integrity !== integrity) {
    problems.push(`${a.package}/${a.file}: ${a.version} ${a.integrity || '(none)'} -> ${version} ${integrity}`);
  }
  return { package: a.package, version, file: a.file, kind: a.kind, integrity };
});

if (checkOnly) {
  if (problems.length) {
    console.error('assets.json is stale:\n  ' + problems.join('\n  '));
    console.error('run: node playground/hash-assets.mjs');
    process.exit(1);
  }
  console.log(`assets.json ok (${updated.length} assets)`);
} else {
  const body = '[\n' + updated.map((a) => '  ' + JSON.stringify(a)).join(',\n') + '\n]\n';
  writeFileSync(manifestPath, body);
  console.log(problems.length ? 'updated:\n  ' + problems.join('\n  ') : `assets.json already up to date (${updated.length} assets)`);
}
