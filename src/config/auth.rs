//! Checks of the `[auth]` section: user names, passwords, and command rules parsed against
//! the command table.

use crate::command::acl::parse_rule;

use super::{AuthConfig, ConfigError};

/// Problems in the `[auth]` section, with their key paths.
pub(super) fn validate(config: &AuthConfig) -> Vec<ConfigError> {
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
