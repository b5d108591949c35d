import { graphql } from 'relay-runtime';

export const products = graphql`
  query PagesProductsQuery($first: Int!) {
    products(first: $first) { edges { node { id ...ProductCard_product } } }
  }
`;

export const orders = graphql`
  query PagesOrdersQuery {
    orders(first: 3) { edges { node { id ...OrderSummary_order } } }
  }
`;

export const node = graphql`
  query PagesNodeQuery($id: ID!) {
    node(id: $id) { id __typename }
  }
`;
