#!/usr/bin/env node
// Headless-browser check of the GraphiQL playground.
//
//   node scripts/graphiql-check.mjs [--no-subscription] http://127.0.0.1:PORT/graphql [screenshot.png]
//
// Needs `npm ci --prefix playground` (for playwright-core) and Debian's
// /usr/bin/chromium (CHROMIUM=/path overrides). Every request to a host other
// than 127.0.0.1 / localhost / [::1] is aborted and counted (WebSockets too).
//
// Phase 1 (query): the page is opened with ?query=<a products query>, the
// execute button is clicked, and the result pane must show "edges" and a
// product name. Prints `graphiql-check: ok (N non-local requests blocked)`
// and takes the screenshot.
//
// Phase 2 (subscription; skipped with --no-subscription): the page is opened
// with ?query=subscription { inventoryChanged ... } and run; once GraphiQL's
// WebSocket to /graphql/ws is acknowledged (connection_ack) and the subscribe
// message is sent, the script itself POSTs adjustInventory(delta: 3) for the
// first product with an admin token (env SECURECART_CHECK_ADMIN_TOKEN, else
// `<repo>/target/debug/securecart token --sub root --role admin`). The result
// pane must then show inventoryChanged with the new `available` within 10 s.
// Takes a second screenshot (<screenshot>-subscription.png) and prints
// `graphiql-check: subscription ok (...)`. On failure the WebSocket frames
// seen are printed.
//
// Any failure prints why and exits 1. The whole run is bounded to 30 s
// (60 s with the subscription phase).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const SUBSCRIPTION_PHASE = !argv.includes('--no-subscription');
const positional = argv.filter((a) => a !== '--no-subscription');
const TOTAL_BUDGET_MS = SUBSCRIPTION_PHASE ? 60_000 : 30_000;
const QUERY = '{ products(first: 3) { edges { node { name } } } }';
const SUBSCRIPTION = 'subscription { inventoryChanged { productId available delta product { name } } }';
const DELTA = 3;
const EVENT_WAIT_MS = 10_000;
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
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
let blockedReported = 0; // how many of `blocked` were already listed on stderr
const sockets = []; // WebSockets the page opened: { url, log: ['> sent', '< received', ...], ... }

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
  for (const ws of sockets) {
    console.log(`  websocket ${ws.url}${ws.closed ? ' (closed)' : ''}: ${ws.log.length} event(s)`);
    for (const line of ws.log.slice(0, 40)) console.log(`    ${line}`);
  }
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

const [target, screenshotPath = '/tmp/graphiql-check.png'] = positional;
if (!target || positional.length > 2 || positional.some((a) => a.startsWith('--'))) {
  console.log('usage: node scripts/graphiql-check.mjs [--no-subscription] http://127.0.0.1:PORT/graphql [screenshot.png]');
  process.exit(1);
}
const subscriptionShotPath = /\.png$/i.test(screenshotPath)
  ? screenshotPath.replace(/\.png$/i, '-subscription.png')
  : `${screenshotPath}-subscription.png`;

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
const endpoint = new URL(pageUrl.href); // POST target for the script's own HTTP calls
endpoint.search = '';
endpoint.hash = '';
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const oneLine = (text, max = 300) => String(text).replace(/\s+/g, ' ').trim().slice(0, max);

// Polls `cond` every 50 ms; resolves true when it holds, false after `ms`.
async function pollFor(cond, ms) {
  const until = Date.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= until) return false;
    await sleep(50);
  }
}

// POSTs a GraphQL request to the endpoint from Node (not through the browser).
async function graphqlPost(label, query, variables, headers = {}) {
  let res;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(remaining(5_000)),
    });
  } catch (err) {
    await fail(`${label}: POST ${endpoint.href} failed: ${err.cause?.message || err.message}`);
  }
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    await fail(`${label}: HTTP ${res.status}, not JSON: ${oneLine(text)}`);
  }
  if (body.errors?.length) await fail(`${label}: HTTP ${res.status}, errors: ${oneLine(JSON.stringify(body.errors))}`);
  if (!res.ok || !body.data) await fail(`${label}: HTTP ${res.status}: ${oneLine(text)}`);
  return body.data;
}

// The admin bearer token: $SECURECART_CHECK_ADMIN_TOKEN, else minted by the built binary.
async function adminToken() {
  const fromEnv = process.env.SECURECART_CHECK_ADMIN_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const bin = join(REPO_ROOT, 'target', 'debug', 'securecart');
  let out;
  try {
    out = execFileSync(bin, ['token', '--sub', 'root', '--role', 'admin'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: remaining(10_000),
    });
  } catch (err) {
    const stderr = err.stderr ? oneLine(err.stderr, 200) : '';
    await fail(`SECURECART_CHECK_ADMIN_TOKEN is unset and \`${bin} token --sub root --role admin\` failed: ${err.code || err.message.split('\n')[0]}${stderr ? ` (${stderr})` : ''}`);
  }
  const token = out.split('\n').map((l) => l.trim()).filter((l) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(l)).pop();
  if (!token) await fail(`\`${bin} token\` printed no JWT: ${oneLine(out)}`);
  return token;
}

const frameText = (payload) => (typeof payload === 'string' ? payload : `<binary ${payload.length} bytes>`);
const frameType = (text) => {
  try {
    return JSON.parse(text).type;
  } catch {
    return undefined;
  }
};

// Phase 2: a live inventoryChanged subscription in GraphiQL, fed by a mutation from here.
async function subscriptionPhase(page, responseText) {
  const token = await adminToken();

  page.on('websocket', (ws) => {
    const entry = { url: ws.url(), log: [], received: [], sent: [], closed: false };
    sockets.push(entry);
    ws.on('framesent', (f) => {
      const text = frameText(f.payload);
      entry.sent.push(text);
      entry.log.push(`> ${oneLine(text, 400)}`);
    });
    ws.on('framereceived', (f) => {
      const text = frameText(f.payload);
      entry.received.push(text);
      entry.log.push(`< ${oneLine(text, 400)}`);
    });
    ws.on('socketerror', (err) => entry.log.push(`! socket error: ${err}`));
    ws.on('close', () => {
      entry.closed = true;
      entry.log.push('! closed');
    });
  });

  // A fresh GraphiQL state: no tabs (and results) persisted from phase 1.
  await page.evaluate(() => localStorage.clear()).catch(() => {});
  const subUrl = new URL(endpoint.href);
  subUrl.searchParams.set('query', SUBSCRIPTION);
  const nav = await page.goto(subUrl.href, { waitUntil: 'load', timeout: remaining(10_000) });
  if (!nav || nav.status() !== 200) await fail(`subscription page: GET ${subUrl.pathname} answered HTTP ${nav?.status()}`);
  await page.waitForSelector('.graphiql-execute-button', { timeout: remaining(10_000) }).catch(async () => {
    await page.screenshot({ path: subscriptionShotPath }).catch(() => {});
    await fail(`subscription page: GraphiQL did not render (screenshot: ${subscriptionShotPath})`);
  });
  await page
    .waitForFunction(
      () => {
        const cm = document.querySelector('.graphiql-query-editor .CodeMirror');
        return !!(cm && cm.CodeMirror && cm.CodeMirror.getValue().includes('inventoryChanged'));
      },
      null,
      { timeout: remaining(5_000) },
    )
    .catch(async () => fail('subscription page: the query editor does not hold the ?query= subscription'));
  if (problems.length) await fail(problems[0]);

  await page.click('.graphiql-execute-button', { timeout: remaining(5_000) });

  // Wait until GraphiQL's graphql-transport-ws connection is acknowledged and the subscription sent.
  const wsPath = `${endpoint.pathname.replace(/\/$/, '')}/ws`; // what the page's subscriptionUrl points at
  const ours = () => sockets.find((w) => new URL(w.url).pathname === wsPath);
  const acked = () => ours()?.received.some((t) => frameType(t) === 'connection_ack');
  const subscribed = () => ours()?.sent.some((t) => frameType(t) === 'subscribe');
  const ready = await pollFor(() => (acked() && subscribed()) || ours()?.closed, remaining(10_000));
  if (!ours()) {
    const text = oneLine(await responseText().catch(() => ''));
    await fail(`GraphiQL opened no WebSocket to ${wsPath} (sockets: ${sockets.map((w) => w.url).join(' ') || 'none'}; result pane: ${JSON.stringify(text)})`);
  }
  if (!ready || !acked() || !subscribed()) {
    await page.screenshot({ path: subscriptionShotPath }).catch(() => {});
    await fail(`WebSocket ${ours().url}: ${!acked() ? 'no connection_ack' : 'no subscribe message sent'}${ours().closed ? ' and it closed' : ''} (screenshot: ${subscriptionShotPath})`);
  }
  // graphql-transport-ws has no "subscription started" reply: give the server a moment to
  // attach the subscriber to its event bus before changing the stock.
  await sleep(500);
  const early = ours().received.filter((t) => ['error', 'complete'].includes(frameType(t)));
  if (early.length || ours().closed) await fail(`the subscription ended before any stock change: ${oneLine(early.join(' ') || 'socket closed')}`);

  // Change the stock from Node: the first product, +3, as an admin.
  const listing = await graphqlPost('product id query', '{ products(first: 1) { edges { node { id } } } }');
  const productId = listing?.products?.edges?.[0]?.node?.id;
  if (!productId) await fail(`product id query returned no product: ${oneLine(JSON.stringify(listing))}`);
  const key = `graphiql-check-${randomUUID()}`;
  const adjusted = await graphqlPost(
    'adjustInventory',
    `mutation($p: ID!) { adjustInventory(productId: $p, delta: ${DELTA}, idempotencyKey: ${JSON.stringify(key)}) { available userErrors { code } } }`,
    { p: productId },
    { authorization: `Bearer ${token}` },
  );
  const result = adjusted?.adjustInventory;
  if (result?.userErrors?.length) await fail(`adjustInventory returned userErrors: ${oneLine(JSON.stringify(result.userErrors))}`);
  const available = result?.available;
  if (typeof available !== 'number') await fail(`adjustInventory returned no available count: ${oneLine(JSON.stringify(adjusted))}`);

  // The result pane must show the event with the new level.
  const shown = await page
    .waitForFunction(
      (want) => {
        const pane = document.querySelector('.graphiql-response') || document.querySelector('.result-window');
        if (!pane) return false;
        const cm = pane.querySelector('.CodeMirror');
        const text = cm && cm.CodeMirror ? cm.CodeMirror.getValue() : pane.innerText;
        return text.includes('"inventoryChanged"') && new RegExp(`"available"\\s*:\\s*${want}(?![0-9])`).test(text);
      },
      available,
      { timeout: remaining(EVENT_WAIT_MS) },
    )
    .then(() => true, () => false);
  await page.screenshot({ path: subscriptionShotPath }).catch(() => {});
  const paneText = await responseText().catch(() => '');
  if (!shown) {
    await fail(`within ${EVENT_WAIT_MS / 1000} s of adjustInventory (product ${productId}, available now ${available}) the result pane did not show inventoryChanged with "available": ${available}; it shows: ${JSON.stringify(oneLine(paneText))} (screenshot: ${subscriptionShotPath})`);
  }
  // The pane holds the event's JSON: check the rest of it too.
  let event;
  try {
    event = JSON.parse(paneText)?.data?.inventoryChanged;
  } catch {}
  if (!event) await fail(`result pane is not a JSON inventoryChanged payload: ${JSON.stringify(oneLine(paneText))}`);
  if (event.productId !== productId) await fail(`inventoryChanged.productId is ${JSON.stringify(event.productId)}, expected ${productId}`);
  if (event.delta !== DELTA) await fail(`inventoryChanged.delta is ${JSON.stringify(event.delta)}, expected ${DELTA}`);
  if (!event.product?.name) await fail(`inventoryChanged.product.name is empty: ${oneLine(JSON.stringify(event))}`);
  if (problems.length) await fail(problems[0]);

  const nexts = ours().received.filter((t) => frameType(t) === 'next').length;
  for (const u of blocked.slice(blockedReported)) console.error(`graphiql-check: blocked ${u}`);
  blockedReported = blocked.length;
  console.log(
    `graphiql-check: subscription ok (inventoryChanged ${productId} "${event.product.name}" available=${available} delta=${event.delta}; ` +
      `${nexts} next frame(s) over ${ours().url}; ${blocked.length} non-local requests blocked)`,
  );
}

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
    // Every failed local request fails the check (non-local ones are the ones this check blocks).
    const url = req.url();
    if (isLocal(url)) problems.push(`local ${req.resourceType()} ${url} failed: ${req.failure()?.errorText}`);
  });
  // The schema must load: GraphiQL posts its introspection query when it starts.
  const introspection = page
    .waitForResponse(
      (res) => res.request().method() === 'POST' && isLocal(res.url()) && (res.request().postData() || '').includes('__schema'),
      { timeout: remaining(15_000) },
    )
    .then(async (res) => ({ status: res.status(), body: await res.json().catch(() => null) }))
    .catch(() => null);

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

  // The introspection answered with a schema, and the docs explorer lists the query root's fields.
  const schema = await introspection;
  if (!schema) await fail('GraphiQL never sent its introspection query (or it got no answer)');
  if (!schema.body?.data?.__schema) {
    await fail(`the introspection query failed (HTTP ${schema.status}): ${JSON.stringify(schema.body?.errors ?? schema.body).slice(0, 300)}`);
  }
  await page.click('button[aria-label="Show Documentation Explorer"]', { timeout: remaining(5_000) });
  const docsListed = await page
    .waitForFunction(
      () => {
        const docs = document.querySelector('.graphiql-doc-explorer');
        return !!docs && docs.innerText.includes('QueryRoot');
      },
      null,
      { timeout: remaining(5_000) },
    )
    .then(() => true, () => false);
  if (!docsListed) await fail('the docs explorer does not show QueryRoot: the schema did not load');
  await page.click('.graphiql-doc-explorer a.graphiql-doc-explorer-type-name:has-text("QueryRoot")', { timeout: remaining(5_000) }).catch(() => {});
  const rootFields = await page
    .waitForFunction(() => /\bproducts\b/.test(document.querySelector('.graphiql-doc-explorer')?.innerText || ''), null, { timeout: remaining(5_000) })
    .then(() => true, () => false);
  if (!rootFields) await fail('the docs explorer does not list QueryRoot.products');
  console.log('graphiql-check: the schema loaded; the docs explorer lists QueryRoot and products');

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
  // Any console error fails the check, except the ones this check causes by blocking non-local
  // requests.
  const ours = consoleErrors.filter((c) => !blocked.some((u) => c.includes(u)) && !c.includes('ERR_BLOCKED_BY_CLIENT'));
  if (ours.length) await fail(`console error: ${ours[0]}`);

  for (const u of blocked.slice(blockedReported)) console.error(`graphiql-check: blocked ${u}`);
  blockedReported = blocked.length;
  console.log(`graphiql-check: ok (${blocked.length} non-local requests blocked)`);
  if (SUBSCRIPTION_PHASE) await subscriptionPhase(page, responseText);

  finished = true;
  await cleanup();
  process.exit(0);
} catch (err) {
  await fail(err && err.message ? err.message.split('\n')[0] : String(err));
}
