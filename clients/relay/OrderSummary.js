import { graphql } from 'relay-runtime';

export const OrderSummary = graphql`
  fragment OrderSummary_order on Order @refetchable(queryName: "OrderSummaryRefetchQuery") {
    id
    status
    total { amount currencyCode }
    lines { name quantity }
  }
`;
