//! One measuring pass over a parsed document: depth, nesting, aliases, root fields,
//! introspection use, fragment cycles and the requested cost, all computed together, through
//! inline fragments and fragment spreads alike (in the manner of Apollo Router's
//! `OperationLimits`). Each named fragment is measured once and reused wherever it is spread,
//! so the pass is linear in the document even when fragments spread each other many times.
//!
//! The cost model is in `cost`; this module applies it to the document alone (requested cost).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Variables};

use super::cost::{CONNECTIONS, MUTATION_COST, list_bound, page_argument};
use super::operation;

/// Nesting of selection sets (fields with selections, inline fragments, spreads) beyond which a
/// document is refused whatever its field depth; it also bounds this pass's recursion.
pub const MAX_NESTING: usize = 32;

/// Deepest nesting under `__schema`/`__type`. Introspection counts toward neither the depth
/// limit nor the cost (graphql-js's standard introspection query nests 15 levels, and tools
/// send it as is); this cap alone stops an `ofType { ofType { ... } }` tower.
pub const MAX_INTROSPECTION_DEPTH: usize = 20;

/// What one pass over a document finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// The deepest field nesting of any operation (`{ a }` is 1; fragments add nothing), outside
    /// introspection.
    pub depth: usize,
    /// The deepest nesting under `__schema`/`__type` (the field itself is 1).
    pub introspection_depth: usize,
    /// The deepest selection-set nesting of any operation, fragments included.
    pub nesting: usize,
    /// Aliases as the operations expand them (a fragment counts each time it is spread).
    pub aliases: usize,
    /// Root fields of the largest operation, through fragments.
    pub root_fields: usize,
    /// Whether some operation selects `__schema` or `__type` at its root.
    pub introspection: bool,
    /// A fragment that spreads itself, directly or through others.
    pub fragment_cycle: Option<String>,
    /// The requested cost of the executed operation (see `cost`).
    pub cost: u64,
    /// The executed operation's type, when it exists.
    pub operation_type: Option<OperationType>,
    /// The executed operation's name, when it has one.
    pub operation_name: Option<String>,
}

/// A selection set's contribution to the measures of its parent.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    depth: usize,
    introspection_depth: usize,
    nesting: usize,
    aliases: usize,
    /// Fields directly in the set (through fragments).
    fields: usize,
    /// `__schema`/`__type` directly in the set.
    introspection: bool,
    /// Cost of the set as an ordinary selection.
    plain: u64,
    /// Cost of one item of a connection: the selections of its `edges` and `nodes`.
    per_item: u64,
    /// Cost of a connection's other fields (`pageInfo`, ...).
    rest: u64,
}

impl Summary {
    fn absorb(&mut self, other: Summary) {
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
        self.nesting = self.nesting.max(other.nesting);
        self.aliases += other.aliases;
        self.fields += other.fields;
        self.introspection |= other.introspection;
        self.plain += other.plain;
        self.per_item += other.per_item;
        self.rest += other.rest;
    }
}

enum Memo {
    InProgress,
    Done(Summary),
}

struct Walker<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    default_page: u64,
    fragments: HashMap<&'a Name, Memo>,
    /// Mutation-root cost of each fragment spread at a mutation's root (`None`: in progress).
    mutation_fragments: HashMap<&'a Name, Option<u64>>,
    cycle: Option<String>,
}

impl<'a> Walker<'a> {
    fn set(&mut self, set: &'a SelectionSet, level: usize) -> Summary {
        let mut summary = Summary::default();
        if level > MAX_NESTING {
            // Refused for its nesting anyway; stop descending.
            summary.nesting = level;
            return summary;
        }
        for item in &set.items {
            let part = match &item.node {
                Selection::Field(field) => self.field(&field.node, level),
                Selection::InlineFragment(f) => nested(self.set(&f.node.selection_set.node, level + 1)),
                Selection::FragmentSpread(s) => nested(self.fragment(&s.node.fragment_name.node, level + 1)),
            };
            summary.absorb(part);
        }
        summary
    }

    fn fragment(&mut self, name: &'a Name, level: usize) -> Summary {
        match self.fragments.get(name) {
            Some(Memo::Done(summary)) => return *summary,
            Some(Memo::InProgress) => {
                self.cycle.get_or_insert_with(|| name.to_string());
                return Summary::default();
            }
            None => {}
        }
        // An unknown fragment is a validation error, reported there.
        let Some(fragment) = self.document.fragments.get(name) else { return Summary::default() };
        self.fragments.insert(name, Memo::InProgress);
        let summary = self.set(&fragment.node.selection_set.node, level);
        self.fragments.insert(name, Memo::Done(summary));
        summary
    }

    fn field(&mut self, field: &'a Field, level: usize) -> Summary {
        let leaf = field.selection_set.node.items.is_empty();
        let sub = if leaf { Summary::default() } else { self.set(&field.selection_set.node, level + 1) };
        let name = field.name.node.as_str();
        let cost = if leaf {
            0
        } else if CONNECTIONS.contains(&name) {
            let n = page_argument(field, self.variables).unwrap_or(self.default_page);
            2 + n.saturating_mul(sub.per_item) + sub.rest
        } else if let Some(bound) = list_bound(name) {
            1 + bound.saturating_mul(sub.plain)
        } else {
            1 + sub.plain
        };
        if matches!(name, "__schema" | "__type") {
            // Free, and measured on its own scale (see `MAX_INTROSPECTION_DEPTH`).
            return Summary {
                introspection_depth: 1 + sub.depth.max(sub.introspection_depth),
                nesting: if leaf { 0 } else { 1 + sub.nesting },
                aliases: usize::from(field.alias.is_some()) + sub.aliases,
                fields: 1,
                introspection: true,
                ..Summary::default()
            };
        }
        let items = matches!(name, "edges" | "nodes");
        Summary {
            depth: 1 + sub.depth,
            introspection_depth: sub.introspection_depth,
            nesting: if leaf { 0 } else { 1 + sub.nesting },
            aliases: usize::from(field.alias.is_some()) + sub.aliases,
            fields: 1,
            introspection: false,
            plain: cost,
            per_item: if items { sub.plain } else { 0 },
            rest: if items { 0 } else { cost },
        }
    }

    /// A mutation's cost: each root field costs `MUTATION_COST` plus its payload's selection.
    fn mutation_cost(&mut self, set: &'a SelectionSet, level: usize) -> u64 {
        let mut total = 0u64;
        for item in &set.items {
            total += match &item.node {
                Selection::Field(f) => {
                    let payload = &f.node.selection_set.node;
                    let sub = if payload.items.is_empty() { 0 } else { self.set(payload, level + 1).plain };
                    MUTATION_COST + sub
                }
                Selection::InlineFragment(f) if level < MAX_NESTING => {
                    self.mutation_cost(&f.node.selection_set.node, level + 1)
                }
                Selection::FragmentSpread(s) if level < MAX_NESTING => {
                    let name = &s.node.fragment_name.node;
                    // Measured once per fragment, like every other measure (a fragment spread
                    // many times would otherwise be walked exponentially often); a cycle adds
                    // nothing here and is refused as `FRAGMENT_CYCLE`.
                    match self.mutation_fragments.get(name) {
                        Some(cost) => cost.unwrap_or(0),
                        None => match self.document.fragments.get(name) {
                            Some(f) => {
                                self.mutation_fragments.insert(name, None);
                                let cost = self.mutation_cost(&f.node.selection_set.node, level + 1);
                                self.mutation_fragments.insert(name, Some(cost));
                                cost
                            }
                            None => 0,
                        },
                    }
                }
                _ => 0,
            };
        }
        total
    }
}

fn nested(mut summary: Summary) -> Summary {
    summary.nesting += 1;
    summary
}

/// Measures `document` in one pass; the cost is that of the operation `operation_name` picks.
pub fn measure(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    default_page: u32,
) -> Measure {
    let mut walker = Walker {
        document,
        variables,
        default_page: u64::from(default_page),
        fragments: HashMap::new(),
        mutation_fragments: HashMap::new(),
        cycle: None,
    };
    let mut out = Measure::default();
    for (_, op) in document.operations.iter() {
        let summary = walker.set(&op.node.selection_set.node, 0);
        out.depth = out.depth.max(summary.depth);
        out.introspection_depth = out.introspection_depth.max(summary.introspection_depth);
        out.nesting = out.nesting.max(summary.nesting);
        out.aliases += summary.aliases;
        out.root_fields = out.root_fields.max(summary.fields);
        out.introspection |= summary.introspection;
    }
    if let Some((name, op)) = operation(document, operation_name) {
        out.operation_type = Some(op.node.ty);
        out.operation_name = name.map(|n| n.to_string());
        let set = &op.node.selection_set.node;
        out.cost = match op.node.ty {
            OperationType::Mutation => walker.mutation_cost(set, 0),
            _ => walker.set(set, 0).plain,
        };
    }
    out.fragment_cycle = walker.cycle;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(query: &str) -> Measure {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        measure(&doc, None, &Variables::default(), 20)
    }

    const BARE: &str =
        "{ products(first: 100) { nodes { vendor { products(first: 100) { nodes { name price { amount } } } } } } }";

    #[test]
    fn fragments_cost_exactly_what_the_bare_selection_costs() {
        let bare = of(BARE);
        assert_eq!(bare.cost, 2 + 100 * (1 + 2 + 100), "the attack's shape: vendors' product pages");
        let inline = of("{ products(first: 100) { ... on ProductConnection { nodes { vendor { \
             products(first: 100) { ... on ProductConnection { nodes { name price { amount } } } } } } } } }");
        let named = of("{ products(first: 100) { ...Page } } \
             fragment Page on ProductConnection { nodes { vendor { products(first: 100) { ...Inner } } } } \
             fragment Inner on ProductConnection { nodes { name ...Price } } \
             fragment Price on Product { price { amount } }");
        let at_root = of("{ ...Root } fragment Root on QueryRoot { products(first: 100) { nodes { \
             ... on Product { vendor { products(first: 100) { nodes { name price { amount } } } } } } } }");
        for m in [&inline, &named, &at_root] {
            assert_eq!(m.cost, bare.cost);
            assert_eq!(m.depth, bare.depth);
        }
    }

    #[test]
    fn depth_aliases_roots_and_introspection_see_through_fragments() {
        let m = of("{ a: x b: y { c: z } ...F } fragment F on Q { d: w v }");
        assert_eq!((m.aliases, m.root_fields, m.depth), (4, 4, 2));
        let twice = of("{ ...F ...F } fragment F on Q { a: x }");
        assert_eq!(twice.aliases, 2, "a fragment counts each time it is spread");
        assert!(of("{ ... on QueryRoot { __schema { queryType { name } } } }").introspection);
        assert!(of("query { ...I } fragment I on QueryRoot { __type(name: \"X\") { name } }").introspection);
        assert!(!of("{ products { nodes { __typename } } }").introspection, "only at the root");
        assert_eq!(of("{ a { b { c } } }").depth, 3);
    }

    #[test]
    fn introspection_is_free_and_capped_on_its_own() {
        // graphql-js 16's getIntrospectionQuery(): 15 levels through `ofType`.
        let type_ref = "kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name \
            ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
        let q = format!("{{ __schema {{ types {{ fields {{ type {{ {type_ref} }} }} }} }} }}");
        let m = of(&q);
        assert_eq!((m.depth, m.cost), (0, 0), "introspection costs nothing and adds no depth");
        assert!(
            m.introspection_depth >= 13 && m.introspection_depth <= MAX_INTROSPECTION_DEPTH,
            "{}",
            m.introspection_depth
        );
        let tower = format!("{{ __type(name: \"X\") {{ {} name {} }} }}", "ofType { ".repeat(25), "}".repeat(25));
        assert!(of(&tower).introspection_depth > MAX_INTROSPECTION_DEPTH);
        assert_eq!(of("{ a { b } __schema { queryType { name } } }").depth, 2, "the rest still counts");
    }

    #[test]
    fn cycles_are_found_and_never_loop() {
        assert_eq!(
            of("query { ...A } fragment A on Q { ...B } fragment B on Q { ...A }").fragment_cycle.as_deref(),
            Some("A")
        );
        assert_eq!(of("query { ...A } fragment A on Q { x }").fragment_cycle, None);
    }

    #[test]
    fn fragments_spread_many_times_are_measured_once() {
        // 2^40 expansions if each spread were walked again.
        let mut q = String::from("{ ...F0 }");
        for i in 0..40 {
            q.push_str(&format!(" fragment F{i} on Q {{ a{i}: x ...F{} ...F{} }}", i + 1, i + 1));
        }
        q.push_str(" fragment F40 on Q { x }");
        let m = of(&q);
        assert!(m.aliases > 1_000_000, "counted as expanded: {}", m.aliases);
    }

    #[test]
    fn mutation_fragments_are_measured_once_too() {
        // 3^32 walks if each spread were followed again.
        let m = of("mutation { ...A } fragment A on MutationRoot { ...A ...A ...A }");
        assert_eq!(m.cost, 0);
        // 2^20 paths to one field (within the nesting cap): each fragment is measured once, and
        // the cost is what the document asks for, path by path.
        let mut q = String::from("mutation { ...F0 }");
        for i in 0..20 {
            q.push_str(&format!(" fragment F{i} on MutationRoot {{ ...F{} ...F{} }}", i + 1, i + 1));
        }
        q.push_str(" fragment F20 on MutationRoot { clearCart { cart { id } } }");
        assert_eq!(of(&q).cost, 11 << 20);
    }

    #[test]
    fn nesting_counts_fragments_too() {
        let deep = format!("{{ {} x {} }}", "... on Q { ".repeat(40), "}".repeat(40));
        assert!(of(&deep).nesting > MAX_NESTING);
    }

    #[test]
    fn mutations_and_variables() {
        assert_eq!(of("mutation { clearCart { cart { id } } }").cost, 10 + 1);
        assert_eq!(of("mutation { ...M } fragment M on MutationRoot { clearCart { cart { id } } }").cost, 11);
        let doc =
            async_graphql::parser::parse_query("query($n: Int) { products(first: $n) { nodes { vendor { name } } } }")
                .unwrap();
        let vars = Variables::from_json(serde_json::json!({ "n": 50 }));
        assert_eq!(measure(&doc, None, &vars, 20).cost, 2 + 50, "50 vendors at 1 each");
    }
}
