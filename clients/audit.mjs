// The graphql-http package's server audits (the GraphQL-over-HTTP spec's MUST, SHOULD and MAY
// checks) against a running SecureCart:
//
//   node audit.mjs http://127.0.0.1:PORT/graphql
//
// Every MUST and SHOULD must pass; a MAY that does not is listed, not failed.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.log('usage: node audit.mjs http://127.0.0.1:PORT/graphql');
  process.exit(1);
}
const results = await auditServer({ url });
const level = (r) => r.name.split(' ')[0];
const failed = results.filter((r) => r.status !== 'ok');
for (const r of failed) {
  const why = r.status === 'ok' ? '' : r.reason;
  console.log(`${level(r) === 'MAY' ? 'note' : 'FAIL'}: ${r.id} ${r.name}: ${why}`);
}
const count = (l) => results.filter((r) => level(r) === l);
const summary = ['MUST', 'SHOULD', 'MAY']
  .map((l) => `${l} ${count(l).filter((r) => r.status === 'ok').length}/${count(l).length}`)
  .join(', ');
const fatal = failed.filter((r) => level(r) !== 'MAY');
console.log(`graphql-http audit: ${summary} passed`);
if (fatal.length) {
  console.log(`graphql-http audit: ${fatal.length} MUST/SHOULD audit(s) failed`);
  process.exit(1);
}
