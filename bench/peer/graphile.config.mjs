// PostGraphile v5 as bench/run.sh's Node peer: the Amber preset over the benchmark database's
// `public` schema, set up like a production deployment (no GraphiQL/Ruru, no watch mode, no
// explain, no websockets, no debug logging), with the same pool size as SecureCart (10).
//
// Inflection: Amber's own names (allProducts, productById, inventoryByProductId,
// orderItemsByOrderId, productByProductId, ...). @graphile/simplify-inflection is NOT used: it
// would only shorten field names (and so the response bytes a little); it changes no SQL and
// no row, and bench/run.sh prints both sides' response sizes anyway.
//
// Caches, all PostGraphile's defaults, none turned off or up:
// - grafserv keeps an LRU of 500 parsed-and-validated documents (parseAndValidateCacheSize),
//   so a repeated query text is parsed and validated once;
// - grafast caches each operation's plan (per document, with constraints on the variables), so
//   a repeated query is planned once;
// - @dataplan/pg runs its SQL as named prepared statements, an LRU of 100 per connection
//   (DATAPLAN_PG_PREPARED_STATEMENT_CACHE_SIZE, unset here);
// - no response cache: every request runs its SQL (like SecureCart with its cache off).
//
// Auth: none. No JWT, no pgSettings, no role switch and so no transaction around a request:
// PostGraphile reads as the connecting user. SecureCart verifies a JWT for Q3 (and resolves the
// customer by subject); the peer is simply asked for customer 1's orders. This favours the peer.
//
// Environment: DATABASE_URL (required), PEER_PORT (default 18410), PEER_HOST (127.0.0.1).
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { pgSmartTags } from "postgraphile/utils";

const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  throw new Error("graphile.config.mjs: set DATABASE_URL to the benchmark database");
}

// products.status has no index, so PostGraphile (PgIndexBehaviorsPlugin) offers no
// `condition: { status: ... }` on it. SecureCart's catalog filters on it all the same (walking
// products_pkey backwards and skipping non-ACTIVE rows, like bench's S1 SQL); the `isIndexed`
// smart tag lets P1 filter the same way. It adds a condition argument and changes no SQL plan.
const StatusConditionPlugin = pgSmartTags(
  [{ kind: "attribute", match: "products.status", tags: { isIndexed: true } }],
  undefined,
  { name: "BenchProductsStatusConditionPlugin" },
);

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [StatusConditionPlugin],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      poolConfig: { max: 10 },
      // No LISTEN/NOTIFY client (no subscriptions, no watch).
      pubsub: false,
    }),
  ],
  grafserv: {
    host: process.env.PEER_HOST ?? "127.0.0.1",
    port: Number(process.env.PEER_PORT ?? 18410),
    graphqlPath: "/graphql",
    graphiql: false,
    graphiqlOnGraphQLGET: false,
    graphqlOverGET: false,
    watch: false,
    websockets: false,
  },
  grafast: {
    explain: false,
  },
};

export default preset;
