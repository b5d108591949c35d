#!/usr/bin/env node
// Headless-browser check of the GraphiQL playground.
//
//   node scripts/graphiql-check.mjs http://127.0.0.1:PORT/graphql [screenshot.png]
//
// Needs `npm ci --prefix playground` (for playwright-core) and Debian's
// /usr/bin/chromium (CHROMIUM=/path overrides). Every request to a host other
// than 127.0.0.1 / localhost / [::1] is aborted and counted. The page is opened
// with ?query=<a products query>, the execute button is clicked, and the
// result pane must show "edges" and a product name. Prints
// `graphiql-check: ok (N non-local requests blocked)` and exits 0, or prints
// why and exits 1. The whole run is bounded to 30 s.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TOTAL_BUDGET_MS = 30_000;
const QUERY = '{ products(first: 3) { edges { node { name } } } }';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const started = Date.now();
const remaining = (cap = TOTAL_BUDGET_MS) =>
  Math.max(1, Math.min(cap, TOTAL_BUDGET_MS - 1_000 - (Date.now() - started)));

let context;
let userDataDir;
let finished = false;
const blocked = [];
const problems = []; // fatal things seen by listeners (page errors, local 404s)
const consoleErrors = [];

async function cleanup() {
  try {
    if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 3_000))]);
  } catch {}
  try {
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  } catch {}
}

async function fail(why) {
  if (finished) return;
  finished = true;
  console.log(`graphiql-check: FAIL: ${why}`);
  for (const p of problems) if (!why.includes(p)) console.log(`  - ${p}`);
  for (const c of consoleErrors.slice(0, 10)) console.log(`  console.error: ${c}`);
  if (blocked.length) console.log(`  ${blocked.length} non-local request(s) blocked: ${blocked.slice(0, 5).join(' ')}`);
  await cleanup();
  process.exit(1);
}

// Hard watchdog: whatever hangs, the run ends within the budget.
setTimeout(() => {
  console.log(`graphiql-check: FAIL: overall timeout (${TOTAL_BUDGET_MS / 1000} s)`);
  try {
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  } catch {}
  process.exit(1);
}, TOTAL_BUDGET_MS).unref();

const [target, screenshotPath = '/tmp/graphiql-check.png'] = process.argv.slice(2);
if (!target) {
  console.log('usage: node scripts/graphiql-check.mjs http://127.0.0.1:PORT/graphql [screenshot.png]');
  process.exit(1);
}

let chromium;
try {
  const require = createRequire(new URL('../playground/package.json', import.meta.url));
  ({ chromium } = require('playwright-core'));
} catch (err) {
  await fail(`playwright-core not found (${err.code || err.message}): run \`npm ci --prefix playground\``);
}

let pageUrl;
try {
  pageUrl = new URL(target);
} catch {
  await fail(`not a URL: ${target}`);
}
if (!LOCAL_HOSTS.has(pageUrl.hostname)) await fail(`refusing non-local URL ${target}`);
pageUrl.searchParams.set('query', QUERY);

const isLocal = (u) => {
  try {
    const url = new URL(u);
    if (url.protocol === 'data:' || url.protocol === 'blob:' || url.protocol === 'about:') return true;
    return LOCAL_HOSTS.has(url.hostname);
  } catch {
    return false;
  }
};

try {
  userDataDir = mkdtempSync(join(tmpdir(), 'graphiql-check-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: remaining(15_000),
  });

  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  // WebSockets are not covered by route(): block non-local ones too.
  // Only non-local ones are intercepted; local ones go straight to the server.
  if (typeof context.routeWebSocket === 'function') {
    await context.routeWebSocket(
      (url) => !isLocal(url.href),
      (ws) => {
        blocked.push(ws.url());
        return ws.close();
      },
    );
  }

  const page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('response', (res) => {
    const type = res.request().resourceType();
    if (res.status() >= 400 && isLocal(res.url()) && ['document', 'script', 'stylesheet', 'font', 'image'].includes(type)) {
      problems.push(`local ${type} ${res.url()} answered HTTP ${res.status()}`);
    }
  });
  page.on('requestfailed', (req) => {
    const url = req.url();
    if (isLocal(url) && ['document', 'script', 'stylesheet'].includes(req.resourceType())) {
      problems.push(`local ${req.resourceType()} ${url} failed: ${req.failure()?.errorText}`);
    }
  });

  const nav = await page.goto(pageUrl.href, { waitUntil: 'load', timeout: remaining(10_000) });
  if (!nav) await fail('navigation returned no response');
  if (nav.status() !== 200) await fail(`GET ${pageUrl.pathname} answered HTTP ${nav.status()}`);
  const ctype = nav.headers()['content-type'] || '';
  if (!ctype.includes('text/html')) await fail(`GET ${pageUrl.pathname} answered content-type "${ctype}", not text/html`);

  // Either GraphiQL renders, or the page shows its own "could not start" error.
  await page
    .waitForFunction(
      () => document.querySelector('.graphiql-execute-button') || document.getElementById('securecart-error'),
      null,
      { timeout: remaining(10_000) },
    )
    .catch(() => {});
  const pageError = await page.evaluate(() => document.getElementById('securecart-error')?.innerText || null);
  if (pageError) {
    await page.screenshot({ path: screenshotPath }).catch(() => {});
    const first = problems.length ? `${problems[0]}; ` : '';
    await fail(`${first}page says: ${pageError.replace(/\s+/g, ' ').trim()} (screenshot: ${screenshotPath})`);
  }
  if (!(await page.evaluate(() => typeof window.GraphiQL !== 'undefined'))) {
    await page.screenshot({ path: screenshotPath }).catch(() => {});
    await fail(`window.GraphiQL is missing (screenshot: ${screenshotPath})`);
  }
  if (!(await page.$('.graphiql-execute-button'))) {
    await page.screenshot({ path: screenshotPath }).catch(() => {});
    await fail(`GraphiQL did not render an execute button (screenshot: ${screenshotPath})`);
  }
  if (problems.length) await fail(problems[0]);

  // The ?query= must have reached the query editor.
  const editorText = () =>
    page.evaluate(() => {
      const cm = document.querySelector('.graphiql-query-editor .CodeMirror');
      return cm && cm.CodeMirror ? cm.CodeMirror.getValue() : document.querySelector('.graphiql-query-editor')?.innerText || '';
    });
  await page
    .waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-query-editor .CodeMirror');
        const text = cm && cm.CodeMirror ? cm.CodeMirror.getValue() : '';
        return text.includes('products(first: 3)');
      },
      null,
      { timeout: remaining(5_000) },
    )
    .catch(async () => fail(`query editor does not hold the ?query= text (it has: ${JSON.stringify((await editorText()).slice(0, 120))})`));

  await page.click('.graphiql-execute-button', { timeout: remaining(5_000) });

  const responseText = () =>
    page.evaluate(() => {
      const pane = document.querySelector('.graphiql-response') || document.querySelector('.result-window');
      if (!pane) return '';
      const cm = pane.querySelector('.CodeMirror');
      return cm && cm.CodeMirror ? cm.CodeMirror.getValue() : pane.innerText;
    });
  const ok = await page
    .waitForFunction(
      () => {
        const pane = document.querySelector('.graphiql-response') || document.querySelector('.result-window');
        if (!pane) return false;
        const cm = pane.querySelector('.CodeMirror');
        const text = cm && cm.CodeMirror ? cm.CodeMirror.getValue() : pane.innerText;
        return text.includes('"edges"') && /"name"\s*:\s*"[^"\s][^"]*"/.test(text);
      },
      null,
      { timeout: remaining(10_000) },
    )
    .then(() => true, () => false);
  await page.screenshot({ path: screenshotPath }).catch(() => {});
  if (!ok) {
    const text = (await responseText().catch(() => '')).replace(/\s+/g, ' ').slice(0, 300);
    await fail(`result pane never showed "edges" with a product name; it shows: ${JSON.stringify(text)} (screenshot: ${screenshotPath})`);
  }
  if (problems.length) await fail(problems[0]);

  finished = true;
  await cleanup();
  for (const u of blocked) console.error(`graphiql-check: blocked ${u}`);
  console.log(`graphiql-check: ok (${blocked.length} non-local requests blocked)`);
  process.exit(0);
} catch (err) {
  await fail(err && err.message ? err.message.split('\n')[0] : String(err));
}
