//! The checked-in SDL is the one the code serves.

#[test]
fn schema_file_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/schema.graphql");
    let checked_in = std::fs::read_to_string(&path).expect("schema/schema.graphql");
    let current = securecart::graphql::sdl();
    assert!(
        checked_in == current,
        "schema/schema.graphql is stale; regenerate it with `cargo run -- schema > schema/schema.graphql`"
    );
}
