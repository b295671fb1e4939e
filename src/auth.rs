//! Front-end authentication and per-user permissions: who may talk to the proxy, and what
//! each client may run and touch.
//!
//! Configured by `[auth]`: a `password` for the default user (Redis' `requirepass`) and/or
//! named `[[auth.users]]` with a password, command rules (`+@all`, `-@dangerous`, `+get`,
//! `-config|set` … applied in order, like Redis ACL rules) and optional key prefixes. With
//! neither, there is no authentication (Redis' `nopass` default user).
//!
//! Passwords are compared in constant time and never logged. Backend credentials are separate
//! (`pools.*.password`): clients authenticate to the proxy, the proxy to the nodes, so the
//! shared backend connections stay shared whoever the client is.

use std::sync::Arc;

use crate::command::CommandSpec;
use crate::config::{AuthConfig, ConfigError};

/// The users clients may authenticate as.
#[derive(Debug, Default)]
pub struct Users {
    default_password: Option<String>,
    users: Vec<Arc<User>>,
}

/// A named user: its password and what it may do.
#[derive(Debug)]
pub struct User {
    /// Its name (`AUTH name password`).
    pub name: String,
    password: String,
    rules: Vec<Rule>,
    key_prefixes: Vec<Vec<u8>>,
}

/// One command rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `+name` / `-name`: a command, or `container|sub` for one subcommand.
    Command { allow: bool, name: String },
    /// `+@category` / `-@category` (`@all` for every command).
    Category { allow: bool, category: String },
}

/// Why a request is not allowed, with Redis' error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run this command.
    Command,
    /// A key is outside the user's prefixes.
    Key,
    /// A script, for a user held to key prefixes: the keys a script touches are not known
    /// before it runs, so the proxy cannot hold it to them.
    Script,
}

impl Denied {
    /// The error reply text (without `-` and CRLF), as Redis 7.0 words it.
    pub fn message(self, command: &str) -> String {
        match self {
            Denied::Command => {
                format!("NOPERM this user has no permissions to run the '{command}' command")
            }
            Denied::Key => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Script => format!(
                "NOPERM this user is limited to key prefixes, and the keys '{command}' touches \
                 cannot be checked before it runs"
            ),
        }
    }
}

impl Users {
    /// The users `config` describes (already validated).
    pub fn from_config(config: &AuthConfig) -> Users {
        Users {
            default_password: config.password.as_ref().map(|p| p.expose().to_string()),
            users: config
                .users
                .iter()
                .map(|u| {
                    Arc::new(User {
                        name: u.name.clone(),
                        password: u.password.expose().to_string(),
                        rules: u
                            .commands
                            .iter()
                            .filter_map(|r| parse_rule(r).ok())
                            .collect(),
                        key_prefixes: u
                            .key_prefixes
                            .iter()
                            .map(|p| p.as_bytes().to_vec())
                            .collect(),
                    })
                })
                .collect(),
        }
    }

    /// True when clients must authenticate before anything else.
    pub fn required(&self) -> bool {
        self.default_password.is_some() || !self.users.is_empty()
    }

    /// Check `AUTH [user] password`. `Ok(None)`: the default user (no restrictions);
    /// `Ok(Some(user))`: a named user; `Err(())`: wrong credentials.
    #[allow(clippy::result_unit_err)]
    pub fn authenticate(
        &self,
        user: Option<&[u8]>,
        password: &[u8],
    ) -> Result<Option<Arc<User>>, ()> {
        match user {
            None | Some(b"default") => match &self.default_password {
                Some(expected) if constant_time_eq(expected.as_bytes(), password) => Ok(None),
                _ => Err(()),
            },
            Some(name) => {
                // Compare against every user, so the time does not say which names exist.
                let mut found = None;
                for user in &self.users {
                    let name_ok = constant_time_eq(user.name.as_bytes(), name);
                    let pass_ok = constant_time_eq(user.password.as_bytes(), password);
                    if name_ok && pass_ok {
                        found = Some(Arc::clone(user));
                    }
                }
                found.map(Some).ok_or(())
            }
        }
    }
}

impl User {
    /// May this user run `spec`?
    pub fn may_run(&self, spec: &CommandSpec) -> bool {
        let container = spec.name.split('|').next().unwrap_or(spec.name);
        let mut allowed = false;
        for rule in &self.rules {
            match rule {
                Rule::Command { allow, name } if name == spec.name || name == container => {
                    allowed = *allow;
                }
                Rule::Category { allow, category }
                    if category == "all"
                        || spec
                            .acl_categories
                            .iter()
                            .any(|c| c.strip_prefix('@') == Some(category)) =>
                {
                    allowed = *allow;
                }
                _ => {}
            }
        }
        allowed
    }

    /// Is this user held to key prefixes?
    pub fn has_key_prefixes(&self) -> bool {
        !self.key_prefixes.is_empty()
    }

    /// May this user touch `key`?
    pub fn may_access(&self, key: &[u8]) -> bool {
        self.key_prefixes.is_empty() || self.key_prefixes.iter().any(|p| key.starts_with(p))
    }
}

/// Parse one command rule; `Err` says why it is not one.
fn parse_rule(rule: &str) -> Result<Rule, String> {
    let rule = rule.trim().to_ascii_lowercase();
    match rule.as_str() {
        "allcommands" => {
            return Ok(Rule::Category {
                allow: true,
                category: "all".into(),
            })
        }
        "nocommands" => {
            return Ok(Rule::Category {
                allow: false,
                category: "all".into(),
            })
        }
        _ => {}
    }
    let (allow, rest) = match rule.split_at_checked(1) {
        Some(("+", rest)) => (true, rest),
        Some(("-", rest)) => (false, rest),
        _ => return Err(format!("{rule:?} must start with + or -")),
    };
    if let Some(category) = rest.strip_prefix('@') {
        let known = category == "all"
            || crate::command::all().iter().any(|c| {
                c.acl_categories
                    .iter()
                    .chain(c.subcommands.iter().flat_map(|s| s.acl_categories.iter()))
                    .any(|k| k.strip_prefix('@') == Some(category))
            });
        if !known {
            return Err(format!("unknown command category @{category}"));
        }
        return Ok(Rule::Category {
            allow,
            category: category.to_string(),
        });
    }
    let (base, sub) = rest.split_once('|').unwrap_or((rest, ""));
    let known = crate::command::all().iter().any(|c| {
        c.name == base && (sub.is_empty() || c.subcommands.iter().any(|s| s.name == rest))
    });
    if !known {
        return Err(format!("unknown command {rest:?}"));
    }
    Ok(Rule::Command {
        allow,
        name: rest.to_string(),
    })
}

/// Problems in the `[auth]` section, with their key paths.
pub fn validate(config: &AuthConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut fail = |path: String, message: String| errors.push(ConfigError { path, message });
    for (i, user) in config.users.iter().enumerate() {
        if user.name.is_empty() || user.name.contains(char::is_whitespace) {
            fail(
                format!("auth.users[{i}].name"),
                "must be a non-empty name without spaces".into(),
            );
        }
        if user.name == "default" {
            fail(
                format!("auth.users[{i}].name"),
                "\"default\" is the user of auth.password; choose another name".into(),
            );
        }
        if config.users[..i].iter().any(|u| u.name == user.name) {
            fail(
                format!("auth.users[{i}].name"),
                format!("duplicate user {:?}", user.name),
            );
        }
        if user.password.expose().is_empty() {
            fail(
                format!("auth.users[{i}].password"),
                "must not be empty".into(),
            );
        }
        for (j, rule) in user.commands.iter().enumerate() {
            if let Err(message) = parse_rule(rule).map(|_| ()) {
                fail(format!("auth.users[{i}].commands[{j}]"), message);
            }
        }
    }
    if config
        .password
        .as_ref()
        .is_some_and(|p| p.expose().is_empty())
    {
        fail(
            "auth.password".into(),
            "must not be empty (omit it for no password)".into(),
        );
    }
    errors
}

/// Equal bytes, compared in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str], prefixes: &[&str]) -> User {
        User {
            name: "u".into(),
            password: "p".into(),
            rules: rules.iter().map(|r| parse_rule(r).unwrap()).collect(),
            key_prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    fn spec(args: &[&str]) -> &'static CommandSpec {
        crate::command::lookup(&crate::resp::test_args(args)).unwrap()
    }

    #[test]
    fn rules_apply_in_order_like_acl() {
        let u = user(&["+@all", "-@dangerous", "+keys"], &[]);
        assert!(u.may_run(spec(&["GET", "k"])));
        assert!(!u.may_run(spec(&["FLUSHALL"])));
        assert!(u.may_run(spec(&["KEYS", "*"])), "a later rule wins");
        let reader = user(&["+@read", "+config|get"], &[]);
        assert!(reader.may_run(spec(&["GET", "k"])));
        assert!(!reader.may_run(spec(&["SET", "k", "v"])));
        assert!(reader.may_run(spec(&["CONFIG", "GET", "x"])));
        assert!(!reader.may_run(spec(&["CONFIG", "SET", "x", "y"])));
        assert!(
            !user(&[], &[]).may_run(spec(&["PING"])),
            "nothing allowed by default"
        );
    }

    #[test]
    fn key_prefixes_and_bad_rules() {
        let u = user(&["allcommands"], &["app:"]);
        assert!(u.may_access(b"app:1"));
        assert!(!u.may_access(b"other"));
        assert!(parse_rule("get").is_err());
        assert!(parse_rule("+@nosuch").is_err());
        assert!(parse_rule("+nosuchcmd").is_err());
        assert!(parse_rule("-client|kill").is_ok());
    }

    #[test]
    fn passwords_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
