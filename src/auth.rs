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

use crate::command::acl::{parse_rule, Rule};
use crate::command::CommandSpec;
use crate::config::AuthConfig;

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

    /// The names of every user: `default` and the named users (ACL USERS).
    pub fn names(&self) -> Vec<&str> {
        std::iter::once("default")
            .chain(self.users.iter().map(|u| u.name.as_str()))
            .collect()
    }

    /// The named user `name` (ACL DRYRUN; not for logging in: see [`Users::authenticate`]).
    pub fn user(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users
            .iter()
            .find(|u| u.name.as_bytes() == name)
            .cloned()
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
        // The last rule that applies decides; nothing is allowed until a rule allows it.
        self.rules
            .iter()
            .rev()
            .find_map(|rule| rule.verdict(spec))
            .unwrap_or(false)
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
