//! Configuration from the environment: `SLOTGATE_<SECTION>__<KEY>` overrides any key of the
//! file, so a container or sidecar needs no file at all.
//!
//! Generic over the TOML value tree: a variable's name is the key path, upper-cased, with
//! `__` between segments (keys contain `_`): `SLOTGATE_PROXY__LISTEN` is `proxy.listen`,
//! `SLOTGATE_BACKEND__TLS__ENABLED` is `backend.tls.enabled`. The value is read as a TOML value
//! when it parses as one (`4`, `true`, `["a:1", "b:2"]`, `{ name = "x" }`), else as a string;
//! where the key wants a string, a value TOML reads as a number or boolean
//! (`AUTH__PASSWORD=1234`) is taken as the string, and where it wants a list of strings, a
//! comma-separated string (`CLUSTER__SEEDS=a:1,b:2`) is the list. What a key wants is asked of
//! the schema itself ([`Expected`], a probe through [`Config`]'s `Deserialize`), never guessed
//! from error messages. Unknown keys are reported with the variable and the key path, like
//! unknown keys of the file. No hand-written list of keys: a key added to the schema is
//! settable from the environment at once.
//!
//! Variables of the command-line flags (`SLOTGATE_LISTEN`, `SLOTGATE_CONFIG` …) are not config
//! paths: clap reads them, and flags win over them. The binary passes their names, taken from
//! its clap definition, to [`EnvOverrides::from_process`]. Precedence, lowest first: defaults,
//! the file, `SLOTGATE_<SECTION>__<KEY>`, flag variables, flags. Pure: the caller passes the
//! variables in.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess};
use serde::Deserialize;

use super::{Config, ConfigError, ConfigErrors};

/// Prefix of every slotgate variable.
pub const PREFIX: &str = "SLOTGATE_";

/// Separator between path segments in a variable name.
const SEPARATOR: &str = "__";

/// One `SLOTGATE_<SECTION>__<KEY>` variable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Override {
    /// The variable's name, for error messages.
    variable: String,
    /// The key path, lower case (`["backend", "tls", "enabled"]`).
    path: Vec<String>,
    /// The value as given.
    raw: String,
}

impl Override {
    /// The key path with dots, as errors spell it.
    fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// The value to set: read as the key's type wants it.
    fn value(&self) -> toml::Value {
        let parsed = parse_toml_value(&self.raw);
        match (Expected::at(&self.path), parsed) {
            (Expected::String, Some(toml::Value::String(s))) => toml::Value::String(s),
            (Expected::String, _) => toml::Value::String(self.raw.clone()),
            (Expected::StringList, Some(array @ toml::Value::Array(_))) => array,
            (Expected::StringList, Some(toml::Value::String(s))) => split_list(&s),
            (Expected::StringList, _) => split_list(&self.raw),
            (Expected::Other, Some(value)) => value,
            (Expected::Other, None) => toml::Value::String(self.raw.clone()),
        }
    }
}

/// `raw` as one TOML value, if it is one.
fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    let mut table = format!("v = {raw}").parse::<toml::Table>().ok()?;
    if table.len() != 1 {
        return None;
    }
    table.remove("v")
}

/// `raw` split at commas into a list of strings, blanks trimmed, empty items left out.
fn split_list(raw: &str) -> toml::Value {
    toml::Value::Array(
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect(),
    )
}

/// The config overrides found in an environment, read once at start and applied again on
/// every reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvOverrides(Vec<Override>);

impl EnvOverrides {
    /// The overrides in the process environment; `flag_variables` are the names clap reads
    /// for the command-line flags, which are not config paths.
    pub fn from_process<S: AsRef<str>>(flag_variables: &[S]) -> Result<EnvOverrides, ConfigErrors> {
        let vars = std::env::vars_os().filter_map(|(k, v)| {
            // A non-UTF-8 name cannot be ours; a non-UTF-8 value of ours is reported.
            let k = k.into_string().ok()?;
            let v = v
                .into_string()
                .unwrap_or_else(|v| v.to_string_lossy().into_owned());
            Some((k, v))
        });
        EnvOverrides::from_vars(vars, flag_variables)
    }

    /// The overrides among `vars` (`(name, value)` pairs): every `SLOTGATE_` variable that is
    /// not one of `flag_variables`. A malformed name is an error naming it.
    pub fn from_vars<S: AsRef<str>>(
        vars: impl IntoIterator<Item = (String, String)>,
        flag_variables: &[S],
    ) -> Result<EnvOverrides, ConfigErrors> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (variable, raw) in vars {
            let Some(rest) = variable.strip_prefix(PREFIX) else {
                continue;
            };
            if flag_variables.iter().any(|f| f.as_ref() == variable) {
                continue;
            }
            let path: Vec<String> = rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
            if path.len() < 2 || path.iter().any(|s| s.is_empty()) {
                let flags: Vec<&str> = flag_variables.iter().map(AsRef::as_ref).collect();
                errors.push(ConfigError {
                    path: variable.clone(),
                    message: format!(
                        "not a configuration variable: config keys are {PREFIX}<SECTION>__<KEY> \
                         (e.g. SLOTGATE_PROXY__LISTEN for proxy.listen), flag variables are {}",
                        flags.join(", ")
                    ),
                });
                continue;
            }
            found.push(Override {
                variable,
                path,
                raw,
            });
        }
        // Stable order (the environment's is arbitrary): by path, so a parent set as a whole
        // (`SLOTGATE_BACKEND__TLS={…}`) comes before its keys, which then refine it.
        found.sort_by(|a, b| a.path.cmp(&b.path));
        if errors.is_empty() {
            Ok(EnvOverrides(found))
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// True when there is nothing to override.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` (a TOML document) with the overrides applied, parsed into a [`Config`] (not
    /// validated). Errors name the variable and the key path.
    pub fn apply(&self, text: &str) -> Result<Config, ConfigErrors> {
        if self.is_empty() {
            return Config::parse(text);
        }
        // The file's own problems are reported as they are, with their lines.
        let mut table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(_) => return Config::parse(text),
        };
        let mut errors = Vec::new();
        for o in &self.0 {
            if let Err(message) = insert(&mut table, &o.path, o.value()) {
                errors.push(ConfigError {
                    path: o.variable.clone(),
                    message,
                });
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Config::from_table(table).map_err(|errors| self.name_variables(errors))
    }

    /// Add the variable's name to errors about keys an override set (matched by key path).
    fn name_variables(&self, errors: ConfigErrors) -> ConfigErrors {
        let named = errors
            .0
            .into_iter()
            .map(|mut e| {
                let from = self.0.iter().find(|o| {
                    let dotted = o.dotted();
                    e.path == dotted
                        || e.path.starts_with(&format!("{dotted}."))
                        || e.path.starts_with(&format!("{dotted}["))
                        || dotted.starts_with(&format!("{}.", e.path))
                });
                if let Some(o) = from {
                    e.message = format!("{} (set by {})", e.message, o.variable);
                }
                e
            })
            .collect();
        ConfigErrors(named)
    }
}

/// Set `path` in `table` to `value`, creating tables on the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key path".into());
    };
    let mut at = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = at
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "{} is not a table, so {} cannot be set",
                    path[..=i].join("."),
                    path.join(".")
                ))
            }
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

impl Config {
    /// The configuration from `file` (if any, else the defaults) with `env` applied: what
    /// `slotgate` runs with before its flags are applied. Not validated.
    pub fn load_with_env(file: Option<&Path>, env: &EnvOverrides) -> Result<Config, ConfigErrors> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors::one("", format!("cannot read {}: {e}", path.display()))
            })?,
            None => String::new(),
        };
        env.apply(&text)
    }
}

/// What the schema wants at a key path, as far as reading an environment value needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// A string (or an enum, spelled as a string).
    String,
    /// A list of strings.
    StringList,
    /// Anything else: a number, a boolean, a table, a list of tables, or no such key.
    Other,
}

impl Expected {
    /// Ask [`Config`]'s `Deserialize` what it wants at `path`: a [`Probe`] walks down the path
    /// (struct fields, map entries, `Option`s) and stops at the first type request past its
    /// end, which it returns as its error. Typed: no error message is read.
    fn at(path: &[String]) -> Expected {
        match Config::deserialize(Probe { path }) {
            Err(Probed::Found(expected)) => expected,
            Ok(_) | Err(Probed::Failed) => Expected::Other,
        }
    }
}

/// The end of a probe, carried out of `Deserialize` as its error.
#[derive(Debug)]
enum Probed {
    /// The probe reached the path's end (or left the schema) and found this.
    Found(Expected),
    /// A `Deserialize` implementation failed on its own.
    Failed,
}

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schema probe: {self:?}")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probed::Failed
    }
}

/// A deserializer holding no data: it feeds a struct or a map the one key next on `path` and
/// reports the type requested where the path ends.
struct Probe<'a> {
    /// The key path still to walk.
    path: &'a [String],
}

impl Probe<'_> {
    /// The type found at this point: `leaf` if the path ends here, else the path goes through
    /// a value that has no keys.
    fn found<T>(&self, leaf: Expected) -> Result<T, Probed> {
        Err(Probed::Found(if self.path.is_empty() {
            leaf
        } else {
            Expected::Other
        }))
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Probed;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.found(Expected::Other)
    }

    fn deserialize_str<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.found(Expected::String)
    }

    fn deserialize_string<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.found(Expected::String)
    }

    fn deserialize_char<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.found(Expected::String)
    }

    fn deserialize_identifier<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        self.found(Expected::String)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        self.found(Expected::String)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Probed> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Probed> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Probed> {
        if !self.path.is_empty() {
            return self.found(Expected::Other);
        }
        // Ask the element type the same question.
        match visitor.visit_seq(OneElement(true)) {
            Err(Probed::Found(Expected::String)) => Err(Probed::Found(Expected::StringList)),
            _ => Err(Probed::Found(Expected::Other)),
        }
    }

    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Probed> {
        match self.path.split_first() {
            Some((key, rest)) => visitor.visit_map(OneEntry {
                key: Some(key),
                rest,
            }),
            None => self.found(Expected::Other),
        }
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Probed> {
        match self.path.split_first() {
            Some((key, rest)) if fields.contains(&key.as_str()) => visitor.visit_map(OneEntry {
                key: Some(key),
                rest,
            }),
            // The path ends at a table, or names a key the struct does not have.
            _ => Err(Probed::Found(Expected::Other)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf unit unit_struct
        tuple tuple_struct ignored_any
    }
}

/// The one entry a [`Probe`] feeds a struct or a map: the next key of the path, its value a
/// probe of the rest.
struct OneEntry<'a> {
    /// The key, until it was handed out.
    key: Option<&'a str>,
    /// The path below it.
    rest: &'a [String],
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Probed;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Probed> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Probed> {
        seed.deserialize(Probe { path: self.rest })
    }
}

/// The one element a [`Probe`] feeds a list, itself a probe (while `.0`).
struct OneElement(bool);

impl<'de> SeqAccess<'de> for OneElement {
    type Error = Probed;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Probed> {
        if std::mem::take(&mut self.0) {
            seed.deserialize(Probe { path: &[] }).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag variables these tests treat as clap's (the binary passes clap's own list).
    const FLAGS: &[&str] = &["SLOTGATE_LISTEN", "SLOTGATE_CONFIG"];

    fn env(vars: &[(&str, &str)]) -> Result<EnvOverrides, ConfigErrors> {
        EnvOverrides::from_vars(
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            FLAGS,
        )
    }

    fn apply(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        env(vars)?.apply(text)
    }

    fn expected(dotted: &str) -> Expected {
        let path: Vec<String> = dotted.split('.').map(String::from).collect();
        Expected::at(&path)
    }

    #[test]
    fn the_schema_says_what_each_key_wants() {
        for key in [
            "proxy.listen",
            "auth.password",
            "cluster.username",
            "log.format",
            "backend.read_policy",
            "placement.hash",
            "placement.hash_tag",
            "pools.cache.master",
            "pools.cache.read_policy",
            "commands.rename.flushall",
            "slots.0-8191",
        ] {
            assert_eq!(expected(key), Expected::String, "{key}");
        }
        for key in [
            "cluster.seeds",
            "pools.cache.replicas",
            "commands.deny",
            "commands.custom.jsonset.flags",
        ] {
            assert_eq!(expected(key), Expected::StringList, "{key}");
        }
        for key in [
            "proxy",
            "proxy.workers",
            "backend.tls.enabled",
            "backend.tls",
            "slowlog.log_slower_than_us",
            "auth.users",
            "pools",
            "pools.cache",
            "commands.custom.jsonset",
            "commands.custom.jsonset.arity",
            "proxy.listne",
            "proxyy.listen",
            "proxy.listen.port",
        ] {
            assert_eq!(expected(key), Expected::Other, "{key}");
        }
    }

    #[test]
    fn every_kind_of_value_overrides_the_file() {
        let file = "[proxy]\nlisten = \"0.0.0.0:1\"\nworkers = 3\n[cluster]\nseeds = [\"f:1\"]\n";
        let config = apply(
            file,
            &[
                ("SLOTGATE_PROXY__LISTEN", "[::1]:6390"),
                ("SLOTGATE_PROXY__WORKERS", "7"),
                ("SLOTGATE_BACKEND__TLS__ENABLED", "true"),
                ("SLOTGATE_CLUSTER__SEEDS", "[\"a:1\", \"b:2\"]"),
                ("SLOTGATE_AUTH__PASSWORD", "12345"),
                ("SLOTGATE_CLUSTER__PASSWORD", "node-pw"),
                ("SLOTGATE_LOG__LEVEL", "debug"),
                ("PATH", "/bin"),
                ("SLOTGATE_LISTEN", "flag variable, not a path"),
            ],
        )
        .unwrap();
        assert_eq!(config.proxy.listen, "[::1]:6390");
        assert_eq!(config.proxy.workers, 7);
        assert!(config.backend.tls.enabled);
        assert_eq!(config.cluster.seeds, ["a:1", "b:2"]);
        assert_eq!(
            config.auth.password.as_ref().map(|p| p.expose()),
            Some("12345")
        );
        assert_eq!(
            config.cluster.password.as_ref().map(|p| p.expose()),
            Some("node-pw")
        );
        assert_eq!(config.log.level, "debug");
        // Untouched keys keep the file's value or the default.
        assert_eq!(config.proxy.max_clients, 10_000);
    }

    #[test]
    fn strings_stay_strings_where_the_key_wants_one() {
        let config = apply(
            "",
            &[
                ("SLOTGATE_AUTH__PASSWORD", "true"),
                ("SLOTGATE_CLUSTER__USERNAME", "\"quoted\""),
                ("SLOTGATE_LOG__LEVEL", "[\"not\", \"a list\"]"),
                ("SLOTGATE_LOG__FORMAT", "json"),
                ("SLOTGATE_SLOWLOG__LOG_SLOWER_THAN_US", "-1"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.auth.password.as_ref().map(|p| p.expose()),
            Some("true")
        );
        assert_eq!(config.cluster.username.as_deref(), Some("quoted"));
        assert_eq!(config.log.level, "[\"not\", \"a list\"]");
        assert_eq!(config.log.format, crate::config::LogFormat::Json);
        assert_eq!(config.slowlog.log_slower_than_us, -1);
    }

    #[test]
    fn comma_lists_and_new_tables() {
        let config = apply(
            "",
            &[
                ("SLOTGATE_CLUSTER__SEEDS", "a:1, b:2"),
                ("SLOTGATE_POOLS__CACHE__MASTER", "127.0.0.1:7000"),
                ("SLOTGATE_POOLS__CACHE__REPLICAS", "127.0.0.1:7001"),
                ("SLOTGATE_COMMANDS__DENY", "KEYS,CLIENT KILL,"),
            ],
        )
        .unwrap();
        assert_eq!(config.cluster.seeds, ["a:1", "b:2"]);
        assert_eq!(config.pools["cache"].master, "127.0.0.1:7000");
        assert_eq!(config.pools["cache"].replicas, ["127.0.0.1:7001"]);
        assert_eq!(config.commands.deny, ["KEYS", "CLIENT KILL"]);
    }

    #[test]
    fn unknown_keys_and_bad_names_are_errors_with_their_path() {
        let e = apply("", &[("SLOTGATE_PROXY__LISTNE", "x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy.listne: unknown key (set by SLOTGATE_PROXY__LISTNE)"
        );
        let e = apply("", &[("SLOTGATE_PROXYY__LISTEN", "x")]).unwrap_err();
        assert!(e.to_string().starts_with("proxyy: unknown key"), "{e}");
        let e = env(&[("SLOTGATE_PROXY_LISTEN", "x")]).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("SLOTGATE_PROXY_LISTEN: not a configuration variable"));
        assert!(
            e.to_string().ends_with("SLOTGATE_LISTEN, SLOTGATE_CONFIG"),
            "{e}"
        );
        let e = apply("", &[("SLOTGATE_PROXY__WORKERS", "many")]).unwrap_err();
        assert!(e.to_string().contains("proxy.workers"), "{e}");
        assert!(e.to_string().contains("SLOTGATE_PROXY__WORKERS"), "{e}");
        let e = apply("", &[("SLOTGATE_PROXY__WORKERS", "true")]).unwrap_err();
        assert!(e.to_string().contains("proxy.workers"), "{e}");
        assert!(e.to_string().contains("SLOTGATE_PROXY__WORKERS"), "{e}");
        let file = "[proxy]\nlisten = \"a:1\"\n";
        let e = apply(file, &[("SLOTGATE_PROXY__LISTEN__PORT", "1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SLOTGATE_PROXY__LISTEN__PORT: proxy.listen is not a table, so proxy.listen.port cannot be set"
        );
        let e = apply("", &[("SLOTGATE_PROXY__LISTEN__PORT", "1")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("(set by SLOTGATE_PROXY__LISTEN__PORT)"),
            "{e}"
        );
    }

    #[test]
    fn without_overrides_the_file_is_parsed_as_is() {
        assert!(apply("[proxy]\nlisten = ", &[]).is_err());
        assert!(apply("[proxy]\nlisten = ", &[("SLOTGATE_LOG__LEVEL", "info")]).is_err());
        assert_eq!(apply("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn a_custom_command_can_be_declared_from_the_environment() {
        let config = apply(
            "",
            &[
                (
                    "SLOTGATE_COMMANDS__CUSTOM__JSON.GET",
                    "{ arity = -2, first_key = 1 }",
                ),
                (
                    "SLOTGATE_COMMANDS__CUSTOM__JSON.GET__FLAGS",
                    "readonly,fast",
                ),
            ],
        )
        .unwrap();
        let get = &config.commands.custom["json.get"];
        assert_eq!((get.arity, get.first_key), (Some(-2), Some(1)));
        assert_eq!(get.flags, ["readonly", "fast"]);
    }
}
