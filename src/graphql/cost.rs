//! The cost model: what a query costs, computed from the document alone (requested) and from
//! the response (actual), so a client can work out a query's cost before sending it.
//!
//! | selection | cost |
//! |---|---|
//! | a scalar or enum field (`name`, `available`, `totalCount`) | 0 |
//! | an object or list field (`price`, `vendor`, `lines`, `pageInfo`) | 1 + its selection |
//! | a connection (`products`, `vendors`, `orders`, `Vendor.products`) | 2 + n × (its `edges` and `nodes` selections, as for one item) + its `pageInfo` |
//! | a mutation field | 10 + its selection |
//!
//! `n` is `first` or `last` (default page size 20) when requested, and the number of items
//! actually returned for the actual cost. Fragments count where they are spread. Example:
//! `{ products(first: 20) { edges { node { name price { amount } inventory { available } vendor { name } } } } }`
//! costs 2 + 20 × (1 + 1 + 1 + 1) = 82 requested: each `node` is an object (1) holding three
//! objects (`price`, `inventory`, `vendor`, 1 each). A page that returns 5 products costs 22.

use std::collections::HashSet;

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Value};

/// Fields that are Relay connections.
const CONNECTIONS: &[&str] = &["products", "vendors", "orders"];
/// Extra cost of a mutation field: writes are dearer than reads.
pub const MUTATION_COST: u64 = 10;

struct Walker<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    default_page: u64,
}

fn page_argument(field: &Field, variables: &Variables) -> Option<u64> {
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

impl Walker<'_> {
    /// Cost of a selection set; `data` is the matching response object for the actual cost.
    fn set(&self, set: &SelectionSet, data: Option<&Value>, seen: &mut HashSet<Name>) -> u64 {
        let mut total = 0;
        for item in &set.items {
            total += match &item.node {
                Selection::Field(field) => self.field(&field.node, data, seen),
                Selection::InlineFragment(f) => self.set(&f.node.selection_set.node, data, seen),
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    // A cycle is a validation error reported elsewhere; never loop on it here.
                    match self.document.fragments.get(name) {
                        Some(fragment) if seen.insert(name.clone()) => {
                            let cost = self.set(&fragment.node.selection_set.node, data, seen);
                            seen.remove(name);
                            cost
                        }
                        _ => 0,
                    }
                }
            };
        }
        total
    }

    fn field(&self, field: &Field, data: Option<&Value>, seen: &mut HashSet<Name>) -> u64 {
        let set = &field.selection_set.node;
        if set.items.is_empty() {
            return 0;
        }
        let key = field.response_key().node.as_str();
        // Actual cost: only what the response holds.
        let value = match data {
            Some(Value::Object(map)) => match map.get(key) {
                None | Some(Value::Null) => return 0,
                Some(v) => Some(v),
            },
            Some(_) => return 0,
            None => None,
        };
        if CONNECTIONS.contains(&field.name.node.as_str()) {
            let requested = page_argument(field, self.variables).unwrap_or(self.default_page);
            let mut per_item = 0;
            let mut rest = 0;
            let mut returned = None;
            for item in &set.items {
                if let Selection::Field(f) = &item.node {
                    let name = f.node.name.node.as_str();
                    let sub = &f.node.selection_set.node;
                    match name {
                        "edges" | "nodes" => {
                            let items = value.and_then(|v| match v {
                                Value::Object(m) => m.get(f.node.response_key().node.as_str()),
                                _ => None,
                            });
                            if let Some(Value::List(list)) = items {
                                returned = Some(list.len() as u64);
                                per_item += list.iter().map(|i| self.set(sub, Some(i), seen)).max().unwrap_or(0);
                            } else {
                                per_item += self.set(sub, None, seen);
                            }
                        }
                        _ => rest += self.field(&f.node, value, seen),
                    }
                }
            }
            let n = if value.is_some() { returned.unwrap_or(0) } else { requested };
            return 2 + n * per_item + rest;
        }
        match value {
            // A list of objects counts once, as its largest item.
            Some(Value::List(items)) => 1 + items.iter().map(|i| self.set(set, Some(i), seen)).max().unwrap_or(0),
            other => 1 + self.set(set, other, seen),
        }
    }
}

/// The cost of one operation of `document` (the named one, or the only one). `data` is the
/// response's `data` for the actual cost, `None` for the requested cost.
pub fn operation_cost(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    default_page: u32,
    data: Option<&Value>,
) -> u64 {
    let operation = match operation_name {
        Some(name) => document.operations.iter().find(|(n, _)| n.map(|n| n.as_str()) == Some(name)),
        None => document.operations.iter().next(),
    };
    let Some((_, operation)) = operation else { return 0 };
    let walker = Walker { document, variables, default_page: u64::from(default_page) };
    let mut seen = HashSet::new();
    let is_mutation = operation.node.ty == OperationType::Mutation;
    operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .map(|item| match (&item.node, is_mutation) {
            // A mutation field costs 10 plus its selection (the payload is not an extra object).
            // One that returned null still cost the write attempt.
            (Selection::Field(field), true) => {
                let payload = match data {
                    Some(Value::Object(map)) => match map.get(field.node.response_key().node.as_str()) {
                        Some(Value::Null) | None => return MUTATION_COST,
                        Some(v) => Some(v),
                    },
                    _ => None,
                };
                MUTATION_COST + walker.set(&field.node.selection_set.node, payload, &mut seen)
            }
            _ => walker.set(&SelectionSet { items: vec![item.clone()] }, data, &mut seen),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(query: &str, data: Option<serde_json::Value>) -> u64 {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let data = data.map(|d| Value::from_json(d).unwrap());
        operation_cost(&doc, None, &Variables::default(), 20, data.as_ref())
    }

    #[test]
    fn the_readme_example() {
        let q = "{ products(first: 20) { edges { node { name price { amount } inventory { available } vendor { name } } } } }";
        assert_eq!(cost(q, None), 82);
        let node = serde_json::json!({ "node": { "name": "x", "price": { "amount": "1" }, "inventory": { "available": 1 }, "vendor": { "name": "v" } } });
        let data = serde_json::json!({ "products": { "edges": [node.clone(), node.clone(), node.clone(), node.clone(), node] } });
        assert_eq!(cost(q, Some(data)), 22);
    }

    #[test]
    fn defaults_scalars_mutations_fragments_and_variables() {
        assert_eq!(cost("{ products { totalCount pageInfo { hasNextPage } edges { cursor } } }", None), 3);
        assert_eq!(cost("{ products { edges { node { id } } } }", None), 2 + 20);
        assert_eq!(cost("mutation { clearCart { cart { id } } }", None), 10 + 1);
        assert_eq!(cost("{ ...F } fragment F on QueryRoot { vendor(id: \"x\") { name } }", None), 1);
        assert_eq!(cost("query { ...A } fragment A on QueryRoot { ...A }", None), 0, "cycles do not loop");
        let doc =
            async_graphql::parser::parse_query("query($n: Int) { products(first: $n) { nodes { vendor { name } } } }")
                .unwrap();
        let vars = Variables::from_json(serde_json::json!({ "n": 50 }));
        assert_eq!(operation_cost(&doc, None, &vars, 20, None), 2 + 50, "50 vendors at 1 each");
    }
}
