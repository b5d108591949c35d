// Compiled with `tsc --noEmit --strict` against the types GraphQL Code Generator wrote from the
// live schema: real field types, nullability and enums, not `any`.
import type {
  AddToCartMutation,
  NodeByIdQuery,
  OrderStatus,
  ProductPageQuery,
  ProductPageQueryVariables,
  StockSubscription,
} from './__generated__/types';

export const firstPage: ProductPageQueryVariables = { first: 2, after: null };

export function names(page: ProductPageQuery): string[] {
  return page.products.edges.map((edge) => edge.node.name);
}

export function orderStatus(result: NodeByIdQuery): OrderStatus | null {
  return result.node?.__typename === 'Order' ? result.node.status : null;
}

export function cartSize(result: AddToCartMutation): number | undefined {
  return result.addCartItem.cart?.totalQuantity;
}

export function level(event: StockSubscription): number {
  return event.inventoryChanged.available;
}

export const paid: OrderStatus = 'PAID' as OrderStatus;

declare const page: ProductPageQuery;
// @ts-expect-error a product's name is a string: the generated types are not `any`.
export const wrong: number = page.products.edges[0].node.name;
// @ts-expect-error `node` may be null (a missing id): strict mode makes the caller check.
export const unchecked: string = ({} as NodeByIdQuery).node.id;
