// Client compatibility: the real npm clients, pinned in package.json, with their default
// settings, against a running SecureCart (scripts/clients.sh starts one on `cargo run`'s
// defaults). Every check asserts on the data it got back.
//
//   node run.mjs http://127.0.0.1:PORT/graphql
//
// Tokens come from SECURECART_ALICE_TOKEN (a customer) and SECURECART_ADMIN_TOKEN.
// Prints `ok: <check>: <what it saw>` per check; any failure prints why and exits 1.
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { relayStylePagination } from '@apollo/client/utilities';
import { Client as UrqlClient, cacheExchange as urqlDocumentCache, fetchExchange, subscriptionExchange } from '@urql/core';
import { cacheExchange as graphcache } from '@urql/exchange-graphcache';
import { relayPagination } from '@urql/exchange-graphcache/extras';
import { buildClientSchema, buildSchema, getIntrospectionQuery, lexicographicSortSchema, printSchema } from 'graphql';
import { toGlobalId } from 'graphql-relay';
import { GraphQLClient, request as gqlRequest } from 'graphql-request';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const { Environment, Network, RecordSource, Store, fetchQuery, getSelector } = require('relay-runtime');
const relay = (name) => require(`./relay/__generated__/${name}.graphql.js`);

const URL_ = process.argv[2];
if (!URL_) {
  console.log('usage: node run.mjs http://127.0.0.1:PORT/graphql');
  process.exit(1);
}
const WS_URL = URL_.replace(/^http/, 'ws') + '/ws';
const ALICE = process.env.SECURECART_ALICE_TOKEN;
const ADMIN = process.env.SECURECART_ADMIN_TOKEN;
if (!ALICE || !ADMIN) {
  console.log('run.mjs: SECURECART_ALICE_TOKEN and SECURECART_ADMIN_TOKEN must be set');
  process.exit(1);
}
const MISSING = toGlobalId('Product', '999999'); // padded, as graphql-relay makes ids
const bearer = (token) => ({ authorization: `Bearer ${token}` });

const failures = [];
const ok = (check, detail) => console.log(`ok: ${check}: ${detail}`);
function assert(cond, why) {
  if (!cond) throw new Error(why);
}
const show = (v) => JSON.stringify(v)?.slice(0, 400);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function check(name, fn, limitMs = 30_000) {
  const started = Date.now();
  try {
    const limit = sleep(limitMs).then(() => Promise.reject(new Error(`timed out after ${limitMs / 1000} s`)));
    await Promise.race([fn(), limit]);
  } catch (err) {
    failures.push(name);
    console.log(`FAIL: ${name}: ${err?.stack || err}`);
    return;
  }
  if (Date.now() - started > 10_000) console.log(`  (${name} took ${Date.now() - started} ms)`);
}

// Plain requests for setting up state (not one of the clients under test).
async function post(query, variables = {}, token) {
  const res = await fetch(URL_, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  assert(res.ok && !body.errors, `setup request failed (${res.status}): ${show(body)}`);
  return body.data;
}

const firstProducts = (n) =>
  post(`query($n: Int!) { products(first: $n) { edges { node { id name } } } }`, { n }).then((d) =>
    d.products.edges.map((e) => e.node),
  );

// Changes a product's stock until `received()` says an event arrived (a subscription listens
// some moments after it is sent; each change makes one event). Returns the levels it set.
async function changeStockUntil(productId, received) {
  const levels = [];
  const until = Date.now() + 15_000;
  while (!received() && Date.now() < until) {
    const d = await post(
      `mutation($p: ID!, $k: String!) { adjustInventory(productId: $p, delta: 1, idempotencyKey: $k) { available } }`,
      { p: productId, k: `clients-${randomUUID()}` },
      ADMIN,
    );
    levels.push(d.adjustInventory.available);
    const wait = Date.now() + 400;
    while (!received() && Date.now() < wait) await sleep(20);
  }
  assert(received(), `no event within 15 s of ${levels.length} stock changes`);
  return levels;
}

// Counts the HTTP methods a client used (wraps the global fetch; changes nothing else).
function countingFetch(log) {
  return (input, init = {}) => {
    const method = (init.method || (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const url = typeof input === 'string' ? input : input.url ?? String(input);
    log.push({ method, url });
    return fetch(input, init);
  };
}

const [p1, p2, p3] = await firstProducts(3);

// A subscriber that stays quiet: graphql-ws with its defaults sends nothing after subscribing
// (no keep-alive pings of its own), and its `ws` socket answers the server's pings by itself.
// It must stay connected however long it is quiet: checked at the end, 65 s on, past the 60 s
// after which async-graphql's own transport closed such clients (3008) and made them reconnect.
// No other check touches p3, so its only event is the one made at the end.
const quietStarted = Date.now();
const quiet = { connects: 0, closes: [], events: [], errors: [] };
quiet.client = createWsClient({
  url: WS_URL,
  webSocketImpl: WebSocket,
  on: { connected: () => quiet.connects++, closed: (e) => quiet.closes.push(e?.code) },
});
quiet.dispose = quiet.client.subscribe(
  { query: 'subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }', variables: { ids: [p3.id] } },
  { next: (v) => quiet.events.push(v), error: (e) => quiet.errors.push(e), complete: () => {} },
);
// A customer order exists for Relay's Order checks: alice buys one unit.
await post(`mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { userErrors { code } } }`, { p: p1.id }, ALICE);
const placed = await post(
  `mutation($k: String!) { checkout(input: { idempotencyKey: $k, paymentToken: "tok_visa", shippingAddress: { name: "Alice", line1: "1 Main St", city: "Oslo", postalCode: "0150", country: "NO" } }) { order { id status } userErrors { code message } } }`,
  { k: `clients-${randomUUID()}` },
  ALICE,
);
assert(placed.checkout.order?.status === 'PAID', `checkout: ${show(placed)}`);
const orderId = placed.checkout.order.id;

// ---------------------------------------------------------------------------------------
// The schema: live introspection (graphql-js's standard query, every option on) says what
// schema/schema.graphql says.
await check('graphql-js introspection matches schema/schema.graphql', async () => {
  const query = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  });
  const res = await fetch(URL_, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
  const body = await res.json();
  assert(!body.errors && body.data?.__schema, `introspection failed: ${show(body)}`);
  assert(body.data.__schema.description === null, `__schema.description: ${show(body.data.__schema.description)}`);
  const live = printSchema(lexicographicSortSchema(buildClientSchema(body.data)));
  const file = printSchema(lexicographicSortSchema(buildSchema(readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8'))));
  if (live !== file) {
    const a = live.split('\n');
    const b = file.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    throw new Error(`they differ from line ${i + 1}: live ${show(a.slice(i, i + 3))} vs file ${show(b.slice(i, i + 3))}`);
  }
  ok('graphql-js introspection matches schema/schema.graphql', `${live.split('\n').length} printed lines equal`);
});

// ---------------------------------------------------------------------------------------
// Apollo Client.
const PRODUCTS = gql`
  query Products($first: Int!, $after: String) {
    products(first: $first, after: $after) {
      edges { cursor node { id name } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
await check('Apollo Client: relayStylePagination over three pages', async () => {
  const paging = { fields: { products: relayStylePagination(['filter', 'sortBy']) } };
  const client = new ApolloClient({
    link: new HttpLink({ uri: URL_, headers: bearer(ALICE) }),
    cache: new InMemoryCache({ typePolicies: { Query: paging, QueryRoot: paging } }),
  });
  const seen = [];
  let after = null;
  for (let page = 0; page < 3; page++) {
    const { data } = await client.query({ query: PRODUCTS, variables: { first: 2, after }, fetchPolicy: 'network-only' });
    seen.push(...data.products.edges.slice(-2).map((e) => e.node.id));
    after = data.products.pageInfo.endCursor;
    assert(data.products.pageInfo.hasNextPage, `page ${page + 1} says there is no next page`);
  }
  const merged = client.readQuery({ query: PRODUCTS, variables: { first: 2 } });
  const ids = merged.products.edges.map((e) => e.node.id);
  const direct = (await firstProducts(6)).map((p) => p.id);
  assert(JSON.stringify(ids) === JSON.stringify(direct), `merged cache ${show(ids)} != first 6 ${show(direct)}`);
  ok('Apollo Client: relayStylePagination over three pages', `6 distinct products merged in order (${ids.length} edges)`);
});

await check('Apollo Client: a mutation updates the normalized cache', async () => {
  const client = new ApolloClient({ link: new HttpLink({ uri: URL_, headers: bearer(ALICE) }), cache: new InMemoryCache() });
  const CART = gql`{ cart { id totalQuantity } }`;
  const before = (await client.query({ query: CART })).data.cart;
  const { data } = await client.mutate({
    mutation: gql`mutation($p: ID!) { addCartItem(productId: $p, quantity: 2) { cart { id totalQuantity } userErrors { code } } }`,
    variables: { p: p2.id },
  });
  assert(data.addCartItem.userErrors.length === 0, `addCartItem: ${show(data)}`);
  const cached = client.readQuery({ query: CART }).cart;
  assert(cached.id === before.id && cached.totalQuantity === before.totalQuantity + 2, `cart in cache: ${show(before)} -> ${show(cached)}`);
  ok('Apollo Client: a mutation updates the normalized cache', `Cart ${cached.id} totalQuantity ${before.totalQuantity} -> ${cached.totalQuantity} without a refetch`);
});

await check("Apollo Client: errorPolicy 'all' keeps partial data", async () => {
  const client = new ApolloClient({ link: new HttpLink({ uri: URL_ }), cache: new InMemoryCache() });
  const result = await client.query({
    query: gql`query($a: ID!, $b: ID!) { a: product(id: $a) { id } b: product(id: $b) { id name } }`,
    variables: { a: MISSING, b: p1.id },
    errorPolicy: 'all',
  });
  assert(result.data?.a === null, `data.a should be null: ${show(result.data)}`);
  assert(result.data?.b?.id === p1.id, `data.b: ${show(result.data)}`);
  const errors = result.error?.errors ?? [];
  assert(errors.length === 1 && errors[0].extensions?.code === 'NOT_FOUND', `errors: ${show(errors)}`);
  ok("Apollo Client: errorPolicy 'all' keeps partial data", `a: null with NOT_FOUND, b: ${result.data.b.name}`);
});

await check('Apollo Client: GraphQLWsLink subscription', async () => {
  const ws = createWsClient({ url: WS_URL, webSocketImpl: WebSocket, connectionParams: bearer(ALICE), lazy: true });
  const client = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
  const events = [];
  const sub = client
    .subscribe({ query: gql`subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }`, variables: { ids: [p1.id] } })
    .subscribe({ next: (r) => events.push(r), error: (e) => events.push({ error: e }) });
  try {
    const levels = await changeStockUntil(p1.id, () => events.length > 0);
    const e = events[0].data?.inventoryChanged;
    assert(e?.productId === p1.id && levels.includes(e.available), `event ${show(events[0])}, levels set ${show(levels)}`);
    ok('Apollo Client: GraphQLWsLink subscription', `inventoryChanged ${e.productId} available=${e.available}`);
  } finally {
    sub.unsubscribe();
    await ws.dispose();
  }
});

await check('Apollo Client: persisted queries over GET', async () => {
  const log = [];
  const sha256 = (text) => createHash('sha256').update(text).digest('hex');
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(new HttpLink({ uri: URL_, fetch: countingFetch(log) }));
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  const query = gql`query PersistedVendors { vendors(first: 2) { edges { node { id name } } } }`;
  const first = await client.query({ query, fetchPolicy: 'network-only' });
  const second = await client.query({ query, fetchPolicy: 'network-only' });
  assert(first.data.vendors.edges.length === 2 && second.data.vendors.edges.length === 2, `data: ${show(second.data)}`);
  const last = log.at(-1);
  assert(last.method === 'GET' && last.url.includes('persistedQuery') && !new URL(last.url).searchParams.has('query'), `last request: ${show(last)}`);
  ok('Apollo Client: persisted queries over GET', `requests ${log.map((r) => r.method).join(', ')}; the last sent only the hash`);
});

await check('Apollo Client: multipart subscription over HttpLink', async () => {
  const client = new ApolloClient({ link: new HttpLink({ uri: URL_ }), cache: new InMemoryCache() });
  const events = [];
  const sub = client
    .subscribe({ query: gql`subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }`, variables: { ids: [p2.id] } })
    .subscribe({ next: (r) => events.push(r), error: (e) => events.push({ error: e }) });
  try {
    const levels = await changeStockUntil(p2.id, () => events.length > 0);
    const e = events[0].data?.inventoryChanged;
    assert(e?.productId === p2.id && levels.includes(e.available), `event ${show(events[0])}, levels ${show(levels)}`);
    ok('Apollo Client: multipart subscription over HttpLink', `inventoryChanged ${e.productId} available=${e.available}`);
  } finally {
    sub.unsubscribe();
  }
});

// ---------------------------------------------------------------------------------------
// urql.
await check('urql: default options (GET queries, document cache)', async () => {
  const log = [];
  const client = new UrqlClient({ url: URL_, exchanges: [urqlDocumentCache, fetchExchange], fetch: countingFetch(log) });
  const result = await client.query(`{ products(first: 3) { edges { node { id name } } } }`, {}).toPromise();
  assert(!result.error, `error: ${result.error}`);
  assert(result.data.products.edges.length === 3, `data: ${show(result.data)}`);
  assert(log[0]?.method === 'GET', `urql sent ${show(log)}`);
  ok('urql: default options (GET queries, document cache)', `3 products over ${log[0].method}`);
});

await check('urql: graphcache with relayPagination and a mutation', async () => {
  const schema = (await post(getIntrospectionQuery())).__schema;
  const client = new UrqlClient({
    url: URL_,
    fetchOptions: { headers: bearer(ALICE) },
    exchanges: [graphcache({ schema: { __schema: schema }, resolvers: { QueryRoot: { products: relayPagination() } } }), fetchExchange],
  });
  const page = `query($after: String) { products(first: 2, after: $after) { edges { node { id } } pageInfo { endCursor } } }`;
  const one = await client.query(page, { after: null }).toPromise();
  const two = await client.query(page, { after: one.data.products.pageInfo.endCursor }).toPromise();
  assert(!one.error && !two.error, `errors: ${one.error} ${two.error}`);
  const merged = await client.query(page, { after: null }, { requestPolicy: 'cache-only' }).toPromise();
  assert(merged.data.products.edges.length === 4, `relayPagination merged ${show(merged.data)}`);
  const cart = `{ cart { id totalQuantity } }`;
  const before = (await client.query(cart, {}).toPromise()).data.cart;
  const added = await client
    .mutation(`mutation($p: ID!) { addCartItem(productId: $p, quantity: 1) { cart { id totalQuantity } userErrors { code } } }`, { p: p1.id })
    .toPromise();
  assert(!added.error, `mutation: ${added.error}`);
  const after = (await client.query(cart, {}, { requestPolicy: 'cache-only' }).toPromise()).data.cart;
  assert(after.totalQuantity === before.totalQuantity + 1, `cached cart ${show(before)} -> ${show(after)}`);
  ok('urql: graphcache with relayPagination and a mutation', `4 products merged from 2 pages; cart ${before.totalQuantity} -> ${after.totalQuantity} in cache`);
});

await check('urql: subscriptionExchange over graphql-ws', async () => {
  const ws = createWsClient({ url: WS_URL, webSocketImpl: WebSocket, lazy: true });
  const client = new UrqlClient({
    url: URL_,
    exchanges: [
      urqlDocumentCache,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query || '' }, sink) }),
        }),
      }),
    ],
  });
  const events = [];
  const { unsubscribe } = client
    .subscription(`subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }`, { ids: [p1.id] })
    .subscribe((r) => events.push(r));
  try {
    const levels = await changeStockUntil(p1.id, () => events.length > 0);
    const e = events[0].data?.inventoryChanged;
    assert(!events[0].error && e?.productId === p1.id && levels.includes(e.available), `event ${show(events[0])}`);
    ok('urql: subscriptionExchange over graphql-ws', `inventoryChanged available=${e.available}`);
  } finally {
    unsubscribe();
    await ws.dispose();
  }
});

// ---------------------------------------------------------------------------------------
// Relay: artifacts compiled by relay-compiler over schema/schema.graphql.
function relayEnvironment(token) {
  const network = Network.create(async (params, variables) => {
    const res = await fetch(URL_, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? bearer(token) : {}) },
      body: JSON.stringify({ query: params.text, variables }),
    });
    return res.json();
  });
  return new Environment({ network, store: new Store(new RecordSource()) });
}

await check('Relay: fetchQuery and @refetchable node refetch of Product and Order', async () => {
  const env = relayEnvironment(ALICE);
  const page = await fetchQuery(env, relay('PagesProductsQuery'), { first: 2 }).toPromise();
  const productRef = page.products.edges[0].node;
  const product = env.lookup(getSelector(relay('ProductCard_product'), productRef)).data;
  assert(product?.name && product.price?.currencyCode, `ProductCard: ${show(product)}`);
  // The refetch query @refetchable generated: `node(id:)` with the fragment.
  const other = relayEnvironment(ALICE);
  const again = await fetchQuery(other, relay('ProductCardRefetchQuery'), { id: product.id }).toPromise();
  const refetchedProduct = again.node && other.lookup(getSelector(relay('ProductCard_product'), again.node)).data;
  assert(refetchedProduct?.id === product.id && refetchedProduct.name === product.name, `Product refetch: ${show(refetchedProduct)}`);

  const orders = await fetchQuery(env, relay('PagesOrdersQuery'), {}).toPromise();
  const ids = orders.orders.edges.map((e) => e.node.id);
  assert(ids.includes(orderId), `alice's orders ${show(ids)} lack ${orderId}`);
  const fresh = relayEnvironment(ALICE);
  const refetched = await fetchQuery(fresh, relay('OrderSummaryRefetchQuery'), { id: orderId }).toPromise();
  const order = refetched.node && fresh.lookup(getSelector(relay('OrderSummary_order'), refetched.node)).data;
  assert(order?.id === orderId && order.status === 'PAID' && order.lines.length >= 1, `OrderSummary: ${show(order)}`);
  ok('Relay: fetchQuery and @refetchable node refetch of Product and Order', `product "${product.name}", order ${order.status} with ${order.lines.length} line(s)`);
});

await check('Relay: node of a missing id is null', async () => {
  const data = await fetchQuery(relayEnvironment(null), relay('PagesNodeQuery'), { id: MISSING }).toPromise();
  assert(data && data.node === null, `data: ${show(data)}`);
  ok('Relay: node of a missing id is null', `node(id: "${MISSING}") -> null`);
});

// ---------------------------------------------------------------------------------------
// graphql-ws, graphql-request, graphql-sse.
await check('graphql-ws: subscribe with a token', async () => {
  const ws = createWsClient({ url: WS_URL, webSocketImpl: WebSocket, connectionParams: bearer(ALICE) });
  const events = [];
  let completed = false;
  const me = await new Promise((resolve, reject) => {
    let value;
    ws.subscribe({ query: '{ me { subject } }' }, { next: (v) => (value = v), error: reject, complete: () => resolve(value) });
  });
  assert(me.data?.me?.subject === 'alice', `me: ${show(me)}`);
  const dispose = ws.subscribe(
    { query: 'subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }', variables: { ids: [p2.id] } },
    { next: (v) => events.push(v), error: (e) => events.push({ error: e }), complete: () => (completed = true) },
  );
  try {
    const levels = await changeStockUntil(p2.id, () => events.length > 0);
    const e = events[0].data?.inventoryChanged;
    assert(e?.productId === p2.id && levels.includes(e.available) && !completed, `event ${show(events[0])}`);
    ok('graphql-ws: subscribe with a token', `me: alice; inventoryChanged available=${e.available}`);
  } finally {
    dispose();
    await ws.dispose();
  }
});

await check('graphql-request: POST and GET', async () => {
  const query = `query($n: Int!) { products(first: $n) { edges { node { id } } } }`;
  const posted = await gqlRequest(URL_, query, { n: 2 });
  const log = [];
  const client = new GraphQLClient(URL_, { method: 'GET', fetch: countingFetch(log) });
  const got = await client.request(query, { n: 2 });
  assert(posted.products.edges.length === 2 && JSON.stringify(posted) === JSON.stringify(got), `POST ${show(posted)} vs GET ${show(got)}`);
  assert(log[0]?.method === 'GET', `graphql-request sent ${show(log)}`);
  ok('graphql-request: POST and GET', `the same 2 products both ways`);
});

await check('graphql-sse: subscription (distinct connections)', async () => {
  const sse = createSseClient({ url: URL_, headers: bearer(ALICE), retryAttempts: 0 });
  const events = [];
  const dispose = sse.subscribe(
    { query: 'subscription($ids: [ID!]) { inventoryChanged(productIds: $ids) { productId available } }', variables: { ids: [p1.id] } },
    { next: (v) => events.push(v), error: (e) => events.push({ error: e }), complete: () => {} },
  );
  try {
    const levels = await changeStockUntil(p1.id, () => events.length > 0);
    const e = events[0].data?.inventoryChanged;
    assert(e?.productId === p1.id && levels.includes(e.available), `event ${show(events[0])}`);
    // A query through the same client: one result, then complete.
    const q = await new Promise((resolve, reject) => {
      let value;
      sse.subscribe({ query: '{ vendors(first: 1) { totalCount } }' }, { next: (v) => (value = v), error: reject, complete: () => resolve(value) });
    });
    assert(q.data?.vendors?.totalCount > 0, `query over SSE: ${show(q)}`);
    ok('graphql-sse: subscription (distinct connections)', `inventoryChanged available=${e.available}; a query over SSE too`);
  } finally {
    dispose();
    sse.dispose();
  }
});

await check(
  'graphql-ws: a quiet subscriber stays connected past 60 s',
  async () => {
    const left = quietStarted + 65_000 - Date.now();
    if (left > 0) await sleep(left);
    const quietFor = Math.round((Date.now() - quietStarted) / 1000);
    assert(quiet.connects === 1 && quiet.closes.length === 0 && quiet.errors.length === 0 && quiet.events.length === 0,
      `after ${quietFor} s: connected ${quiet.connects} time(s), closes ${show(quiet.closes)}, errors ${show(quiet.errors.map(String))}, events ${show(quiet.events)}`);
    try {
      const levels = await changeStockUntil(p3.id, () => quiet.events.length > 0);
      const e = quiet.events[0].data?.inventoryChanged;
      assert(e?.productId === p3.id && levels.includes(e.available) && quiet.connects === 1, `event ${show(quiet.events[0])}, connects ${quiet.connects}`);
      ok('graphql-ws: a quiet subscriber stays connected past 60 s', `quiet for ${quietFor} s, one connection, then inventoryChanged available=${e.available}`);
    } finally {
      quiet.dispose();
      await quiet.client.dispose();
    }
  },
  100_000,
);

if (failures.length) {
  console.log(`clients: ${failures.length} check(s) failed: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('clients: every check passed');
process.exit(0);
