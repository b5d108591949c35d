//! Completes async-graphql's results the way the GraphQL specification says, in one place for
//! the whole schema (async-graphql issues 798 and 1532; no upstream fix yet):
//!
//! - **A failed field is `null`, not missing.** async-graphql drops a field whose resolver
//!   failed from its object, and answers `data: null` when every root field failed. Here a
//!   field with an error at (or under) its path is put back as `null`; a `null` in a non-null
//!   position (`String!`, or an item of `[T!]`) makes its parent `null`, up to the nearest
//!   nullable field, and `data` is `null` only when that reaches a non-null root field.
//! - **Keys in selection order.** async-graphql resolves a selection set's fields at once and
//!   writes each as it completes; the result map is rebuilt in the order of the selection set
//!   (fields of fragments where the fragment is spread), as the specification's
//!   `CollectFields` orders it.
//! - **`__schema { description }` is the schema's description** (this schema has none:
//!   `null`), not the text async-graphql returns, which describes the `__Schema` meta-type.
//!
//! The walk follows the document and the value together, with the field types read once from
//! the printed SDL (`Shapes`), and `@skip`/`@include` evaluated with the request's variables.
//! Type conditions are not evaluated (the runtime type of an interface's object is not in the
//! result unless `__typename` is selected): a key the value does not hold, with no error under
//! it, was not selected for this object and stays absent; and where fragments on different
//! types of an interface select the same keys in different orders, the first order in the
//! document wins (the one case where keys may differ from the spec's order).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use async_graphql::parser::types::{BaseType, Directive, ExecutableDocument, Selection, SelectionSet, Type, TypeKind};
use async_graphql::{Name, PathSegment, Positioned, Response, Value, Variables};

/// The fields of each object and interface type, with their types, from the SDL.
pub struct Shapes {
    types: HashMap<String, HashMap<String, Type>>,
    roots: [String; 3],
}

impl Shapes {
    /// The shapes of this server's schema, read from its SDL once.
    pub fn of_schema() -> &'static Shapes {
        static SHAPES: std::sync::OnceLock<Shapes> = std::sync::OnceLock::new();
        SHAPES.get_or_init(|| Shapes::from_sdl(&super::sdl()))
    }

    /// Reads the field types from the schema's SDL.
    pub fn from_sdl(sdl: &str) -> Self {
        let mut types: HashMap<String, HashMap<String, Type>> = HashMap::new();
        if let Ok(document) = async_graphql::parser::parse_schema(sdl) {
            for definition in document.definitions {
                let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = definition else { continue };
                let fields = match &ty.node.kind {
                    TypeKind::Object(o) => &o.fields,
                    TypeKind::Interface(i) => &i.fields,
                    _ => continue,
                };
                let map = fields.iter().map(|f| (f.node.name.node.to_string(), f.node.ty.node.clone())).collect();
                types.insert(ty.node.name.node.to_string(), map);
            }
        }
        let parse = |text: &str| Type::new(text).expect("a valid type");
        for root in ["QueryRoot", "MutationRoot", "SubscriptionRoot"] {
            let fields = types.entry(root.to_string()).or_default();
            fields.insert("__schema".into(), parse("__Schema!"));
            fields.insert("__type".into(), parse("__Type"));
        }
        Self { types, roots: ["QueryRoot".into(), "MutationRoot".into(), "SubscriptionRoot".into()] }
    }

    fn field(&self, ty: Option<&str>, name: &str) -> Option<&Type> {
        self.types.get(ty?)?.get(name)
    }

    /// Rewrites `response.data` as the specification completes it (see the module's text).
    /// `operation` is the executed operation's name; a response without `data` (a request
    /// error: nothing executed) is left alone.
    pub fn complete(
        &self,
        document: &ExecutableDocument,
        operation: Option<&str>,
        variables: &Variables,
        response: &mut Response,
    ) {
        let Some((_, op)) = super::limits::operation(document, operation) else { return };
        let executed = !matches!(response.data, Value::Null) || response.errors.iter().any(|e| !e.path.is_empty());
        if !executed {
            return;
        }
        let root = &self.roots[match op.node.ty {
            async_graphql::parser::types::OperationType::Query => 0,
            async_graphql::parser::types::OperationType::Mutation => 1,
            async_graphql::parser::types::OperationType::Subscription => 2,
        }];
        let (mut errored, mut exact) = (HashSet::new(), HashSet::new());
        for error in &response.errors {
            for end in 1..=error.path.len() {
                errored.insert(error.path[..end].iter().map(Segment::from).collect::<Vec<_>>());
            }
            exact.insert(error.path.iter().map(Segment::from).collect::<Vec<_>>());
        }
        let tracking = !errored.is_empty();
        let mut walk = Walk {
            shapes: self,
            document,
            variables,
            errored,
            exact,
            tracking,
            path: Vec::new(),
            memo: HashMap::new(),
        };
        let map = match std::mem::take(&mut response.data) {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        let sets = [&op.node.selection_set.node];
        response.data = walk.object(map, Some(root), &sets).unwrap_or(Value::Null);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Index(usize),
}

impl From<&PathSegment> for Segment {
    fn from(s: &PathSegment) -> Self {
        match s {
            PathSegment::Field(f) => Self::Key(f.clone()),
            PathSegment::Index(i) => Self::Index(*i),
        }
    }
}

/// A non-null position received `null`: its parent must be `null` too.
struct Bubble;

/// One response key of a selection set, through fragments.
struct Collected<'a> {
    key: &'a Name,
    name: &'a str,
    ty: Option<&'a Type>,
    sets: Vec<&'a SelectionSet>,
}

struct Walk<'a> {
    shapes: &'a Shapes,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// Every path with an error at or under it.
    errored: HashSet<Vec<Segment>>,
    /// The paths errors were raised at.
    exact: HashSet<Vec<Segment>>,
    /// Whether any field failed: only then is `path` kept (it is compared with `errored`).
    tracking: bool,
    path: Vec<Segment>,
    /// The collected fields of each (selection sets, type) met, so the items of a list collect
    /// theirs once, not once per item. Keyed by the sets' addresses in the document and the
    /// type name's.
    memo: HashMap<(Vec<usize>, usize), Rc<Vec<Collected<'a>>>>,
}

/// Whether `@skip`/`@include` leave a selection in, with the request's variables.
fn included(directives: &[Positioned<Directive>], variables: &Variables) -> bool {
    directives.iter().all(|d| {
        let name = d.node.name.node.as_str();
        if name != "skip" && name != "include" {
            return true;
        }
        let condition = d
            .node
            .get_argument("if")
            .and_then(|v| v.node.clone().into_const_with(|n| variables.get(&n).cloned().ok_or(())).ok());
        let on = matches!(condition, Some(Value::Boolean(true)));
        if name == "skip" { !on } else { on }
    })
}

/// Fragments nest at most this deep here (the limits refuse deeper documents anyway).
const MAX_FRAGMENT_DEPTH: usize = 32;

impl<'a> Walk<'a> {
    fn collect(&self, set: &'a SelectionSet, ty: Option<&'a str>, out: &mut Vec<Collected<'a>>, depth: usize) {
        if depth > MAX_FRAGMENT_DEPTH {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) if !included(&f.node.directives, self.variables) => {}
                Selection::InlineFragment(f) if !included(&f.node.directives, self.variables) => {}
                Selection::FragmentSpread(f) if !included(&f.node.directives, self.variables) => {}
                Selection::Field(f) => {
                    let field = &f.node;
                    let key = field.alias.as_ref().map_or(&field.name.node, |a| &a.node);
                    let sub = &field.selection_set.node;
                    match out.iter_mut().find(|c| c.key == key) {
                        Some(c) => {
                            c.sets.push(sub);
                            if c.ty.is_none() {
                                c.ty = self.shapes.field(ty, c.name);
                            }
                        }
                        None => out.push(Collected {
                            key,
                            name: field.name.node.as_str(),
                            ty: self.shapes.field(ty, field.name.node.as_str()),
                            sets: vec![sub],
                        }),
                    }
                }
                Selection::InlineFragment(f) => {
                    let inner = f.node.type_condition.as_ref().map(|c| c.node.on.node.as_str()).or(ty);
                    self.collect(&f.node.selection_set.node, inner, out, depth + 1);
                }
                Selection::FragmentSpread(s) => {
                    if let Some(fragment) = self.document.fragments.get(&s.node.fragment_name.node) {
                        let inner = Some(fragment.node.type_condition.node.on.node.as_str());
                        self.collect(&fragment.node.selection_set.node, inner, out, depth + 1);
                    }
                }
            }
        }
    }

    fn errored_here(&self) -> bool {
        self.tracking && self.errored.contains(&self.path)
    }

    fn object(
        &mut self,
        mut map: async_graphql::indexmap::IndexMap<Name, Value>,
        ty: Option<&'a str>,
        sets: &[&'a SelectionSet],
    ) -> Result<Value, Bubble> {
        let key =
            (sets.iter().map(|s| *s as *const SelectionSet as usize).collect(), ty.map_or(0, |t| t.as_ptr() as usize));
        let collected = match self.memo.get(&key) {
            Some(collected) => collected.clone(),
            None => {
                let mut collected = Vec::new();
                for set in sets {
                    self.collect(set, ty, &mut collected, 0);
                }
                let collected = Rc::new(collected);
                self.memo.insert(key, collected.clone());
                collected
            }
        };
        // The common case: no field failed and async-graphql wrote the keys in selection order
        // (it does, but for fragments that repeat or reorder keys). Complete the values in place
        // rather than rebuild the object: no new map, no moved entries, no path kept.
        if !self.tracking
            && ty != Some("__Schema")
            && map.len() == collected.len()
            && map.keys().zip(collected.iter()).all(|(k, c)| k == c.key)
        {
            for (value, c) in map.values_mut().zip(collected.iter()) {
                let taken = std::mem::replace(value, Value::Null);
                *value = self.value(taken, c.ty, &c.sets)?;
            }
            return Ok(Value::Object(map));
        }
        let mut out = async_graphql::indexmap::IndexMap::with_capacity(map.len().max(collected.len()));
        for c in collected.iter() {
            self.path.push(Segment::Key(if self.tracking { c.key.to_string() } else { String::new() }));
            let value = match map.swap_remove(c.key) {
                Some(_) if ty == Some("__Schema") && c.name == "description" => Some(Value::Null),
                Some(value) => Some(value),
                None if self.errored_here() => Some(Value::Null),
                None => None,
            };
            let done = value.map(|v| self.value(v, c.ty, &c.sets));
            self.path.pop();
            match done {
                Some(Ok(v)) => {
                    out.insert(c.key.clone(), v);
                }
                Some(Err(bubble)) => return Err(bubble),
                None => {}
            }
        }
        // Nothing the document did not select should be here; keep it rather than lose it.
        out.extend(map);
        Ok(Value::Object(out))
    }

    /// Completes one value of type `ty`; `Err` only when `ty` is non-null and the value must be
    /// `null` because of an error.
    fn value(&mut self, value: Value, ty: Option<&'a Type>, sets: &[&'a SelectionSet]) -> Result<Value, Bubble> {
        let nullable = ty.is_none_or(|t| t.nullable);
        let or_null = |nullable: bool| if nullable { Ok(Value::Null) } else { Err(Bubble) };
        let selects = sets.iter().any(|s| !s.items.is_empty());
        match value {
            // async-graphql answers `null` for an object every field of which failed (the
            // errors are under it, none at it): rebuild it, each field `null` or bubbling.
            Value::Null
                if selects
                    && ty.is_none_or(|t| matches!(t.base, BaseType::Named(_)))
                    && self.errored_here()
                    && !self.exact.contains(&self.path) =>
            {
                match self.object(Default::default(), ty.map(named_type), sets) {
                    Ok(v) => Ok(v),
                    Err(Bubble) => or_null(nullable),
                }
            }
            Value::Null if !nullable && self.errored_here() => Err(Bubble),
            Value::List(items) => {
                let item_ty = match ty.map(|t| &t.base) {
                    Some(BaseType::List(inner)) => Some(&**inner),
                    _ => None,
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    self.path.push(Segment::Index(i));
                    let done = self.value(item, item_ty, sets);
                    self.path.pop();
                    match done {
                        Ok(v) => out.push(v),
                        Err(Bubble) => return or_null(nullable),
                    }
                }
                Ok(Value::List(out))
            }
            Value::Object(map) if selects => {
                let named = ty.map(named_type);
                match self.object(map, named, sets) {
                    Ok(v) => Ok(v),
                    Err(Bubble) => or_null(nullable),
                }
            }
            v => Ok(v),
        }
    }
}

fn named_type(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named_type(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
        type QueryRoot { a: A  b: A!  list: [A!]  items: [A]!  n: Int }
        type A { x: Int  y: Int!  z: A }
    "#;

    fn complete(query: &str, data: serde_json::Value, errors: &[&[serde_json::Value]]) -> serde_json::Value {
        let shapes = Shapes::from_sdl(SDL);
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut response = Response::new(Value::from_json(data).unwrap());
        for path in errors {
            let mut e = async_graphql::ServerError::new("boom", None);
            e.path = path
                .iter()
                .map(|s| match s {
                    serde_json::Value::String(k) => PathSegment::Field(k.clone()),
                    n => PathSegment::Index(n.as_u64().unwrap() as usize),
                })
                .collect();
            response.errors.push(e);
        }
        shapes.complete(&document, None, &Variables::default(), &mut response);
        serde_json::to_value(&response.data).unwrap()
    }

    use serde_json::json;

    #[test]
    fn a_failed_nullable_field_is_null_and_keys_follow_the_selection() {
        let out = complete("{ a { x } n }", json!({"n": 1}), &[&[json!("a")]]);
        assert_eq!(out.to_string(), r#"{"a":null,"n":1}"#);
        let out = complete("{ n a { x } }", json!({"a": {"x": 1}, "n": 2}), &[]);
        assert_eq!(out.to_string(), r#"{"n":2,"a":{"x":1}}"#);
        // Every root field failed: the nullable ones are null, data is not.
        let out = complete("{ a { x } n }", json!(null), &[&[json!("a")], &[json!("n")]]);
        assert_eq!(out, json!({"a": null, "n": null}));
    }

    #[test]
    fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
        let out = complete("{ a { x y } n }", json!({"a": {"x": 1}, "n": 1}), &[&[json!("a"), json!("y")]]);
        assert_eq!(out, json!({"a": null, "n": 1}));
        // Through a nullable parent into a non-null root field: data is null.
        let out = complete("{ b { y } n }", json!({"b": {}, "n": 1}), &[&[json!("b"), json!("y")]]);
        assert_eq!(out, json!(null));
        // A nested nullable object absorbs it.
        let out =
            complete("{ a { z { y } x } }", json!({"a": {"z": {}, "x": 3}}), &[&[json!("a"), json!("z"), json!("y")]]);
        assert_eq!(out, json!({"a": {"z": null, "x": 3}}));
    }

    #[test]
    fn an_object_whose_fields_all_failed_is_rebuilt_not_lost() {
        // async-graphql answers `b: null` when every field of `b` failed.
        let out = complete("{ b { x } n }", json!({"b": null, "n": 1}), &[&[json!("b"), json!("x")]]);
        assert_eq!(out, json!({"b": {"x": null}, "n": 1}));
        let out =
            complete("{ items { x } }", json!({"items": [{"x": 1}, null]}), &[&[json!("items"), json!(1), json!("x")]]);
        assert_eq!(out, json!({"items": [{"x": 1}, {"x": null}]}));
        // An error at the object itself keeps it null (and bubbles when it is non-null).
        let out = complete("{ a { x } n }", json!({"a": null, "n": 1}), &[&[json!("a")]]);
        assert_eq!(out, json!({"a": null, "n": 1}));
        let out = complete("{ b { y } n }", json!({"b": null, "n": 1}), &[&[json!("b"), json!("y")]]);
        assert_eq!(out, json!(null), "`b.y: Int!` failed, `b: A!` cannot be null: data is");
    }

    #[test]
    fn skipped_fields_take_no_place_in_the_order() {
        let shapes = Shapes::from_sdl(SDL);
        let document = async_graphql::parser::parse_query("query($s: Boolean!) { n @skip(if: $s) a { x } n }").unwrap();
        let mut response = Response::new(Value::from_json(json!({"a": {"x": 1}, "n": 2})).unwrap());
        let variables = Variables::from_json(json!({"s": true}));
        shapes.complete(&document, None, &variables, &mut response);
        assert_eq!(serde_json::to_string(&response.data).unwrap(), r#"{"a":{"x":1},"n":2}"#);
    }

    #[test]
    fn list_items_follow_their_item_type() {
        // `[A!]`: a non-null item failed, so the (nullable) list is null.
        let out = complete(
            "{ list { y } n }",
            json!({"list": [{"y": 1}, {}], "n": 1}),
            &[&[json!("list"), json!(1), json!("y")]],
        );
        assert_eq!(out, json!({"list": null, "n": 1}));
        // `[A]!`: a nullable item is null, the list stays.
        let out =
            complete("{ items { y } }", json!({"items": [{"y": 1}, {}]}), &[&[json!("items"), json!(1), json!("y")]]);
        assert_eq!(out, json!({"items": [{"y": 1}, null]}));
        // A list async-graphql dropped as a whole comes back as null.
        let out = complete("{ n list { y } }", json!({"n": 1}), &[&[json!("list"), json!(0), json!("y")]]);
        assert_eq!(out.to_string(), r#"{"n":1,"list":null}"#);
    }

    #[test]
    fn fragments_and_aliases_keep_document_order_and_skipped_fields_stay_absent() {
        let query = "query { ...F second: a { y } n @skip(if: true) } fragment F on QueryRoot { first: a { ... on A { x } y } }";
        let out = complete(query, json!({"second": {"y": 2}, "first": {"y": 1, "x": 0}}), &[]);
        assert_eq!(out.to_string(), r#"{"first":{"x":0,"y":1},"second":{"y":2}}"#);
    }

    #[test]
    fn the_schema_has_no_description() {
        let shapes = Shapes::from_sdl(SDL);
        let document = async_graphql::parser::parse_query("{ __schema { description } }").unwrap();
        let data = json!({"__schema": {"description": "A GraphQL Schema defines ..."}});
        let mut response = Response::new(Value::from_json(data).unwrap());
        shapes.complete(&document, None, &Variables::default(), &mut response);
        assert_eq!(serde_json::to_value(&response.data).unwrap(), json!({"__schema": {"description": null}}));
    }
}
