//! The cost model: what a query costs, computed from the document alone (requested) and from
//! the response (actual), so a client can work out a query's cost before sending it.
//!
//! | selection | cost |
//! |---|---|
//! | a scalar or enum field (`name`, `available`, `totalCount`) | 0 |
//! | an object or list field (`price`, `vendor`, `lines`, `pageInfo`) | 1 + its selection |
//! | a connection (`products`, `vendors`, `orders`, `Vendor.products`) | 2 + n × (its `edges` and `nodes` selections, as for one item) + its `pageInfo` |
//! | a bounded list (`Order.lines`, `Cart.lines`: at most 20, as a cart holds at most 20 products) | 1 + 20 × (its selection, as for one item) |
//! | a mutation field | 10 + its selection |
//!
//! `n` is `first` or `last` (default page size 20) when requested, and the number of items
//! actually returned for the actual cost. Fragments (inline or named) count where they are
//! spread, exactly as the same selection written out. Example:
//! `{ products(first: 20) { edges { node { name price { amount } inventory { available } vendor { name } } } } }`
//! costs 2 + 20 × (1 + 1 + 1 + 1) = 82 requested: each `node` is an object (1) holding three
//! objects (`price`, `inventory`, `vendor`, 1 each). A page that returns 5 products costs 22.

use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Value, Variables};

use super::operation;
use crate::budget::ThrottleStatus;

/// Fields that are Relay connections.
pub const CONNECTIONS: &[&str] = &["products", "vendors", "orders"];
/// Lists that are not connections, with the most items they can hold: costed as that many
/// (requested) or as many as came back (actual), never as one.
pub const BOUNDED_LISTS: &[(&str, u64)] = &[("lines", crate::service::cart::MAX_CART_LINES as u64)];

/// The bound of a bounded list field, if `name` is one.
pub fn list_bound(name: &str) -> Option<u64> {
    BOUNDED_LISTS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Extra cost of a mutation field: writes are dearer than reads.
pub const MUTATION_COST: u64 = 10;
/// Steps the actual-cost walk may take before it settles for the requested cost.
const STEP_BUDGET: u32 = 200_000;

/// The page size a connection field asks for (`first` or `last`, literal or variable).
pub fn page_argument(field: &Field, variables: &Variables) -> Option<u64> {
    for name in ["first", "last"] {
        if let Some(value) = field.get_argument(name) {
            let value =
                value.node.clone().into_const_with(|v| Ok::<_, ()>(variables.get(&v).cloned().unwrap_or(Value::Null)));
            if let Ok(Value::Number(n)) = value {
                return n.as_u64().or(Some(0));
            }
        }
    }
    None
}

/// Walks a selection against the response: only what the response holds costs.
struct Actual<'a> {
    document: &'a ExecutableDocument,
    steps: u32,
}

impl<'a> Actual<'a> {
    /// The fields of `set`, through inline fragments and spreads (`seen` guards cycles).
    fn fields(&mut self, set: &'a SelectionSet, seen: &mut Vec<&'a Name>, out: &mut Vec<&'a Field>) {
        for item in &set.items {
            self.steps += 1;
            match &item.node {
                Selection::Field(f) => out.push(&f.node),
                Selection::InlineFragment(f) => self.fields(&f.node.selection_set.node, seen, out),
                Selection::FragmentSpread(s) => {
                    let name = &s.node.fragment_name.node;
                    if let Some(fragment) = self.document.fragments.get(name)
                        && !seen.contains(&name)
                    {
                        seen.push(name);
                        self.fields(&fragment.node.selection_set.node, seen, out);
                        seen.pop();
                    }
                }
            }
        }
    }

    fn set(&mut self, set: &'a SelectionSet, data: &Value) -> u64 {
        let mut fields = Vec::new();
        self.fields(set, &mut Vec::new(), &mut fields);
        fields.into_iter().map(|f| self.field(f, data)).sum()
    }

    fn field(&mut self, field: &'a Field, data: &Value) -> u64 {
        let set = &field.selection_set.node;
        if set.items.is_empty() || self.steps > STEP_BUDGET {
            return 0;
        }
        let value = match data {
            Value::Object(map) => match map.get(field.response_key().node.as_str()) {
                None | Some(Value::Null) => return 0,
                Some(v) => v,
            },
            _ => return 0,
        };
        if CONNECTIONS.contains(&field.name.node.as_str()) {
            let mut fields = Vec::new();
            self.fields(set, &mut Vec::new(), &mut fields);
            let (mut per_item, mut returned, mut rest) = (0, 0, 0);
            for f in fields {
                let items = match value {
                    Value::Object(m) => m.get(f.response_key().node.as_str()),
                    _ => None,
                };
                match (f.name.node.as_str(), items) {
                    ("edges" | "nodes", Some(Value::List(list))) => {
                        returned = list.len() as u64;
                        let sub = &f.selection_set.node;
                        per_item += list.iter().map(|i| self.set(sub, i)).max().unwrap_or(0);
                    }
                    ("edges" | "nodes", _) => {}
                    _ => rest += self.field(f, value),
                }
            }
            return 2 + returned * per_item + rest;
        }
        match value {
            // A bounded list counts each item; any other list of objects once, as its largest.
            Value::List(items) if list_bound(field.name.node.as_str()).is_some() => {
                1 + items.iter().map(|i| self.set(set, i)).sum::<u64>()
            }
            Value::List(items) => 1 + items.iter().map(|i| self.set(set, i)).max().unwrap_or(0),
            other => 1 + self.set(set, other),
        }
    }
}

/// The actual cost of the executed operation, from the response's `data` (never above
/// `requested`, which it falls back to if the walk grows too long).
pub fn actual_cost(document: &ExecutableDocument, operation_name: Option<&str>, data: &Value, requested: u64) -> u64 {
    let Some((_, op)) = operation(document, operation_name) else { return 0 };
    let mut walker = Actual { document, steps: 0 };
    let set = &op.node.selection_set.node;
    let cost = if op.node.ty == OperationType::Mutation {
        let mut fields = Vec::new();
        walker.fields(set, &mut Vec::new(), &mut fields);
        fields
            .into_iter()
            .map(|f| {
                // A mutation field costs 10 plus its selection (the payload is not an extra
                // object); one that returned null still cost the write attempt.
                let payload = match data {
                    Value::Object(map) => map.get(f.response_key().node.as_str()),
                    _ => None,
                };
                match payload {
                    Some(p @ Value::Object(_)) => MUTATION_COST + walker.set(&f.selection_set.node, p),
                    _ => MUTATION_COST,
                }
            })
            .sum()
    } else {
        walker.set(set, data)
    };
    if walker.steps > STEP_BUDGET { requested } else { cost.min(requested) }
}

/// `extensions.cost` of a response.
pub fn cost_value(requested: u64, actual: u64, status: Option<ThrottleStatus>) -> Value {
    let mut cost = async_graphql::indexmap::IndexMap::new();
    cost.insert(Name::new("requestedQueryCost"), Value::from(requested));
    cost.insert(Name::new("actualQueryCost"), Value::from(actual));
    if let Some(s) = status {
        let mut t = async_graphql::indexmap::IndexMap::new();
        t.insert(Name::new("maximumAvailable"), Value::from(s.maximum_available.floor() as u64));
        t.insert(Name::new("currentlyAvailable"), Value::from(s.currently_available.floor().max(0.0) as u64));
        t.insert(Name::new("restoreRate"), Value::from(s.restore_rate.floor() as u64));
        cost.insert(Name::new("throttleStatus"), Value::Object(t));
    }
    Value::Object(cost)
}

#[cfg(test)]
mod tests {
    use super::super::measure::measure;
    use super::*;

    fn cost(query: &str, data: Option<serde_json::Value>) -> u64 {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let requested = measure(&doc, None, &Variables::default(), 20).cost;
        match data {
            None => requested,
            Some(d) => actual_cost(&doc, None, &Value::from_json(d).unwrap(), requested),
        }
    }

    #[test]
    fn the_readme_example() {
        let q = "{ products(first: 20) { edges { node { name price { amount } inventory { available } vendor { name } } } } }";
        assert_eq!(cost(q, None), 82);
        let node = serde_json::json!({ "node": { "name": "x", "price": { "amount": "1" }, "inventory": { "available": 1 }, "vendor": { "name": "v" } } });
        let data = serde_json::json!({ "products": { "edges": [node.clone(), node.clone(), node.clone(), node.clone(), node] } });
        assert_eq!(cost(q, Some(data.clone())), 22);
        let wrapped = "{ products(first: 20) { ... on ProductConnection { edges { ...E } } } } \
             fragment E on ProductEdge { node { name price { amount } inventory { available } vendor { name } } }";
        assert_eq!(cost(wrapped, None), 82);
        assert_eq!(cost(wrapped, Some(data)), 22, "the actual cost sees through fragments too");
    }

    #[test]
    fn defaults_scalars_mutations_fragments_and_variables() {
        assert_eq!(cost("{ products { totalCount pageInfo { hasNextPage } edges { cursor } } }", None), 3);
        assert_eq!(cost("{ products { edges { node { id } } } }", None), 2 + 20);
        assert_eq!(cost("mutation { clearCart { cart { id } } }", None), 10 + 1);
        assert_eq!(cost("{ ...F } fragment F on QueryRoot { vendor(id: \"x\") { name } }", None), 1);
        assert_eq!(cost("query { ...A } fragment A on QueryRoot { ...A }", None), 0, "cycles do not loop");
        let data = serde_json::json!({ "clearCart": { "cart": { "id": "x" } } });
        assert_eq!(cost("mutation { clearCart { cart { id } } }", Some(data)), 11);
        assert_eq!(cost("mutation { clearCart { cart { id } } }", Some(serde_json::json!({ "clearCart": null }))), 10);
    }
}
