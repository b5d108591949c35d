//! Every environment variable, in one table (`variables.toml`, data read at start-up): its name,
//! the setting it sets (a key of the TOML file), how its text is read, its default and what it
//! means. `apply` lays the variables that
//! are set over the file's table; serde then reads the whole as `Settings`, so enum values,
//! addresses and dates are parsed by their types, not by hand. The README's configuration table
//! is generated from this one (`markdown`), and a test fails when the two differ.

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Settings;

/// How a variable's text becomes a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Taken as it is (a URL, a path, an address, a date, a filter).
    Text,
    /// An enum value, case-insensitive (serde checks it).
    Word,
    /// An integer.
    Number,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// Comma-separated values.
    List,
    /// A cost budget `max/rate`, e.g. `1000/50`.
    Budget,
}

/// One environment variable (a row of `variables.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Var {
    /// Its name.
    pub name: String,
    /// The setting it sets, as a dotted TOML key (empty: it is not a setting).
    pub key: String,
    /// How its text is read.
    pub kind: Kind,
    /// The default, as the README shows it: a literal in backticks (checked against the code's
    /// default by a test), or words.
    pub default: String,
    /// What it means.
    pub doc: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    var: Vec<Var>,
}

/// Every variable, in the order the README lists them (the table is data, in `variables.toml`).
/// A later variable for the same key wins (`SECURECART_LOG` over `RUST_LOG`).
pub fn vars() -> &'static [Var] {
    static VARS: std::sync::OnceLock<Vec<Var>> = std::sync::OnceLock::new();
    VARS.get_or_init(|| {
        let table: Table = toml::from_str(include_str!("variables.toml")).expect("variables.toml is a valid table");
        table.var
    })
}

/// The TOML value of `text` read as `kind`.
fn value(var: &Var, text: &str) -> anyhow::Result<toml::Value> {
    let text = text.trim();
    use Kind::*;
    Ok(match var.kind {
        Text => toml::Value::String(text.to_string()),
        Word => toml::Value::String(text.to_ascii_lowercase()),
        Number => {
            toml::Value::Integer(text.parse().with_context(|| format!("{}: `{text}` is not a whole number", var.name))?)
        }
        Bool => toml::Value::Boolean(match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            other => bail!("{} must be true or false, not `{other}`", var.name),
        }),
        List => toml::Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        ),
        Budget => {
            let parts = text
                .split_once('/')
                .and_then(|(m, r)| Some((m.trim().parse::<f64>().ok()?, r.trim().parse::<f64>().ok()?)));
            let Some((maximum, restore_rate)) = parts else {
                bail!("{} must be `max/rate`, e.g. 1000/50, not `{text}`", var.name);
            };
            let mut t = toml::Table::new();
            t.insert("maximum".into(), toml::Value::Float(maximum));
            t.insert("restore_rate".into(), toml::Value::Float(restore_rate));
            toml::Value::Table(t)
        }
    })
}

/// Sets `key` (dotted) in `table` to `value`.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut keys = key.split('.').peekable();
    let mut table = table;
    while let Some(k) = keys.next() {
        if keys.peek().is_none() {
            table.insert(k.to_string(), value);
            return;
        }
        let entry = table.entry(k.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("a table");
    }
}

/// The listeners take `host:port` with an IP address; `localhost:PORT` is read as
/// `127.0.0.1:PORT`, and a bare `:PORT` is refused with the two addresses it could mean.
fn listen_address(name: &str, text: String) -> anyhow::Result<String> {
    if !name.ends_with("_LISTEN") {
        return Ok(text);
    }
    let trimmed = text.trim();
    if let Some(port) = trimmed.strip_prefix("localhost:") {
        return Ok(format!("127.0.0.1:{port}"));
    }
    if trimmed.starts_with(':') {
        bail!(
            "{name} = `{trimmed}` needs an address before the port: `127.0.0.1{trimmed}` (this machine only) or \
             `0.0.0.0{trimmed}` (every interface)"
        );
    }
    Ok(text)
}

/// Lays every variable `env` has over `table`. Each is also read on its own first, so a bad
/// value is reported with its variable's name and an example of what it takes.
pub fn apply(table: &mut toml::Table, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for var in vars().iter().filter(|v| !v.key.is_empty()) {
        let Some(text) = env(&var.name) else { continue };
        let text = listen_address(&var.name, text)?;
        let value = value(var, &text)?;
        let mut alone = toml::Table::new();
        set(&mut alone, &var.key, value.clone());
        if let Err(e) = toml::Value::Table(alone).try_into::<Settings>() {
            let example = if var.default.starts_with('`') { format!(" (e.g. {})", var.default) } else { String::new() };
            bail!("{} = `{}` is not valid{example}: {}", var.name, text.trim(), e.message().trim());
        }
        set(table, &var.key, value);
    }
    Ok(())
}

/// The README's configuration table, rows in `VARS` order.
pub fn markdown() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in vars() {
        out.push_str(&format!("| `{}` | {} | {} |\n", v.name, v.default, v.doc));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of<'a>(mut value: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
        for k in key.split('.') {
            value = value.as_table()?.get(k)?;
        }
        Some(value)
    }

    #[test]
    fn every_key_is_a_setting_and_literal_defaults_are_the_code_defaults() {
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        for var in vars().iter().filter(|v| !v.key.is_empty()) {
            let Some(literal) = var.default.strip_prefix('`').and_then(|d| d.split('`').next()) else { continue };
            // The README's literal, read as the variable would be, is what the code defaults to.
            let mut alone = toml::Table::new();
            set(&mut alone, &var.key, value(var, literal).unwrap());
            let read: Settings = toml::Value::Table(alone).try_into().unwrap_or_else(|e| panic!("{}: {e}", var.name));
            let read = toml::Value::try_from(read).unwrap();
            assert_eq!(key_of(&read, &var.key), key_of(&defaults, &var.key), "{}", var.name);
        }
    }

    #[test]
    fn the_readme_table_is_this_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let (start, end) =
            ("<!-- configuration table: generated from src/config/env.rs -->\n", "<!-- end of configuration table -->");
        let table = readme.split_once(start).and_then(|(_, rest)| rest.split_once(end)).map(|(t, _)| t);
        assert_eq!(
            table,
            Some(markdown().as_str()),
            "README.md's configuration table differs from the code; paste:\n{}",
            markdown()
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_an_example() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let err =
            apply(&mut toml::Table::new(), env(&[("SECURECART_LISTEN", "shop.local:8081")])).unwrap_err().to_string();
        assert!(err.contains("SECURECART_LISTEN") && err.contains("127.0.0.1:8080"), "{err}");
        let err = apply(&mut toml::Table::new(), env(&[("SECURECART_ENV", "staging")])).unwrap_err().to_string();
        assert!(err.contains("SECURECART_ENV") && err.contains("production"), "{err}");
        let err = apply(&mut toml::Table::new(), env(&[("SECURECART_BUDGET_ADMIN", "lots")])).unwrap_err().to_string();
        assert!(err.contains("max/rate"), "{err}");
        let mut table = toml::Table::new();
        apply(&mut table, env(&[("SECURECART_ENV", "PROD"), ("SECURECART_INTROSPECTION", "Nobody")])).unwrap();
        let s: Settings = toml::Value::Table(table).try_into().unwrap();
        assert!(s.environment.is_production());
        assert_eq!(s.auth.introspection, Some(super::super::IntrospectionPolicy::Nobody));
    }
}
