//! Configuration from the environment: `SLOTGATE_<SECTION>__<KEY>` overrides any key of the
//! file, so a container or sidecar needs no file at all.
//!
//! Generic over the TOML value tree: a variable's name is the key path, upper-cased, with
//! `__` between segments (keys contain `_`): `SLOTGATE_PROXY__LISTEN` is `proxy.listen`,
//! `SLOTGATE_BACKEND__TLS__ENABLED` is `backend.tls.enabled`. The value is read as a TOML value
//! when it parses as one (`4`, `true`, `["a:1", "b:2"]`, `{ name = "x" }`), else as a string;
//! a value TOML reads as a number or boolean where the key wants a string (`AUTH__PASSWORD=1234`)
//! is taken as the string, and a comma-separated string where the key wants a list
//! (`CLUSTER__SEEDS=a:1,b:2`) as the list. Unknown keys are reported with the variable and the
//! key path, like unknown keys of the file. No hand-written list of keys: a key added to the
//! schema is settable from the environment at once.
//!
//! Variables of the command-line flags (`SLOTGATE_LISTEN`, `SLOTGATE_CONFIG` …, see
//! [`FLAG_VARIABLES`]) are not config paths; clap reads them, and flags win over them.
//! Precedence, lowest first: defaults, the file, `SLOTGATE_<SECTION>__<KEY>`, flag variables,
//! flags. Pure: the caller passes the variables in.

use std::path::Path;

use super::{Config, ConfigError, ConfigErrors};

/// Prefix of every slotgate variable.
pub const PREFIX: &str = "SLOTGATE_";

/// Separator between path segments in a variable name.
const SEPARATOR: &str = "__";

/// Variables that belong to command-line flags (clap reads them), not to config paths.
pub const FLAG_VARIABLES: &[&str] = &[
    "SLOTGATE_CONFIG",
    "SLOTGATE_LISTEN",
    "SLOTGATE_CLUSTER",
    "SLOTGATE_WORKERS",
    "SLOTGATE_LOG_LEVEL",
    "SLOTGATE_LOG_FORMAT",
    "SLOTGATE_ADMIN_LISTEN",
    "SLOTGATE_DRAIN_TIMEOUT_MS",
    "SLOTGATE_PID_FILE",
];

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
    fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// The config overrides found in an environment, read once at start and applied again on
/// every reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvOverrides(Vec<Override>);

impl EnvOverrides {
    /// The overrides in the process environment.
    pub fn from_process() -> Result<EnvOverrides, ConfigErrors> {
        EnvOverrides::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            // A non-UTF-8 name cannot be ours; a non-UTF-8 value of ours is reported.
            let k = k.into_string().ok()?;
            let v = v
                .into_string()
                .unwrap_or_else(|v| v.to_string_lossy().into_owned());
            Some((k, v))
        }))
    }

    /// The overrides among `vars` (`(name, value)` pairs): every `SLOTGATE_` variable that is
    /// not a flag variable. A malformed name is an error naming it.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<EnvOverrides, ConfigErrors> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (variable, raw) in vars {
            let Some(rest) = variable.strip_prefix(PREFIX) else {
                continue;
            };
            if FLAG_VARIABLES.contains(&variable.as_str()) {
                continue;
            }
            let path: Vec<String> = rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
            if path.len() < 2 || path.iter().any(|s| s.is_empty()) {
                errors.push(ConfigError {
                    path: variable.clone(),
                    message: format!(
                        "not a configuration variable: config keys are {PREFIX}<SECTION>__<KEY> \
                         (e.g. SLOTGATE_PROXY__LISTEN for proxy.listen), flag variables are {}",
                        FLAG_VARIABLES.join(", ")
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
        let base: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(_) => return Config::parse(text),
        };
        let mut forms: Vec<Form> = self.0.iter().map(|o| Form::first(&o.raw)).collect();
        // Each retry fixes one override's form; more attempts than overrides cannot help.
        for _ in 0..=self.0.len() {
            let mut table = base.clone();
            let mut errors = Vec::new();
            for (o, form) in self.0.iter().zip(&forms) {
                if let Err(message) = insert(&mut table, &o.path, form.value(&o.raw)) {
                    errors.push(ConfigError {
                        path: o.variable.clone(),
                        message,
                    });
                }
            }
            if !errors.is_empty() {
                return Err(ConfigErrors(errors));
            }
            let text = toml::to_string(&table)
                .map_err(|e| ConfigErrors::one("", format!("environment overrides: {e}")))?;
            let errors = match Config::parse(&text) {
                Ok(config) => return Ok(config),
                Err(errors) => errors,
            };
            if !self.retry_with_other_form(&errors, &mut forms) {
                return Err(self.name_variables(errors));
            }
        }
        Err(ConfigErrors::one(
            "",
            "environment overrides do not fit the schema",
        ))
    }

    /// If a type error is at an override's path and another reading of its value may fit,
    /// switch to it and say so.
    fn retry_with_other_form(&self, errors: &ConfigErrors, forms: &mut [Form]) -> bool {
        for error in &errors.0 {
            if error.message == "unknown key" {
                continue;
            }
            for (o, form) in self.0.iter().zip(forms.iter_mut()) {
                if error.path != o.dotted() {
                    continue;
                }
                let wants_list = error.message.contains("expected a sequence");
                let next = match form {
                    Form::Toml(_) => Form::String,
                    Form::String if wants_list => Form::List,
                    _ => continue,
                };
                *form = next;
                return true;
            }
        }
        false
    }

    /// Add the variable's name to errors about keys an override set.
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

/// How an override's value is read.
#[derive(Clone, Debug)]
enum Form {
    /// As the TOML value it parses to.
    Toml(toml::Value),
    /// As a string, verbatim.
    String,
    /// As a list of strings, split at commas.
    List,
}

impl Form {
    /// TOML when the whole value is one TOML value, else a string.
    fn first(raw: &str) -> Form {
        match format!("v = {raw}").parse::<toml::Table>() {
            Ok(mut t) if t.len() == 1 => t.remove("v").map_or(Form::String, Form::Toml),
            _ => Form::String,
        }
    }

    fn value(&self, raw: &str) -> toml::Value {
        match self {
            Form::Toml(v) => v.clone(),
            Form::String => toml::Value::String(raw.to_string()),
            Form::List => toml::Value::Array(
                raw.split(',')
                    .map(|s| toml::Value::String(s.trim().to_string()))
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    .collect(),
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<EnvOverrides, ConfigErrors> {
        EnvOverrides::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn apply(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        env(vars)?.apply(text)
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
    fn comma_lists_and_new_tables() {
        let config = apply(
            "",
            &[
                ("SLOTGATE_CLUSTER__SEEDS", "a:1, b:2"),
                ("SLOTGATE_POOLS__CACHE__MASTER", "127.0.0.1:7000"),
            ],
        )
        .unwrap();
        assert_eq!(config.cluster.seeds, ["a:1", "b:2"]);
        assert_eq!(config.pools["cache"].master, "127.0.0.1:7000");
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
        let e = apply("", &[("SLOTGATE_PROXY__WORKERS", "many")]).unwrap_err();
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
}
