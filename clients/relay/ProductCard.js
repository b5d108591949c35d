// Relay sources: relay-compiler reads the graphql tags below (over schema/schema.graphql) and
// writes the artifacts run.mjs executes to relay/__generated__ (not committed).
import { graphql } from 'relay-runtime';

export const ProductCard = graphql`
  fragment ProductCard_product on Product @refetchable(queryName: "ProductCardRefetchQuery") {
    id
    name
    price { amount currencyCode }
    inventory { available }
  }
`;
