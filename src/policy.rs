//! The proxy-side command policy: a deny list and a rename map, the answer to Redis'
//! `rename-command FLUSHALL ""` for operators who cannot touch every node's config.
//!
//! `[commands] deny = ["KEYS", "FLUSHALL"]` refuses those commands with an error naming the
//! setting. `[commands.rename] FLUSHALL = "DANGER-FLUSHALL"` makes clients call the new name
//! (slotgate sends the real one to Redis) and the old name unknown; renaming to `""` disables
//! a command. Checked once per request only when a policy is configured.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::config::CommandsConfig;
use crate::resp::Request;

/// A configured deny list and rename map.
#[derive(Debug, Default)]
pub struct CommandPolicy {
    /// Lowercase names (the real ones) that are refused.
    deny: HashSet<Vec<u8>>,
    /// Lowercase client-facing new name → real name.
    renamed: HashMap<Vec<u8>, Bytes>,
    /// Lowercase real names hidden by a rename (unknown to clients).
    hidden: HashSet<Vec<u8>>,
}

impl CommandPolicy {
    /// The policy `config` describes, or `None` when it has no deny list and no renames.
    pub fn from_config(config: &CommandsConfig) -> Option<CommandPolicy> {
        if config.deny.is_empty() && config.rename.is_empty() {
            return None;
        }
        let lower = |s: &str| s.to_ascii_lowercase().into_bytes();
        Some(CommandPolicy {
            deny: config.deny.iter().map(|d| lower(d)).collect(),
            renamed: config
                .rename
                .iter()
                .filter(|(_, to)| !to.is_empty())
                .map(|(from, to)| (lower(to), Bytes::from(from.to_ascii_lowercase())))
                .collect(),
            hidden: config.rename.keys().map(|k| lower(k)).collect(),
        })
    }

    /// Apply the policy to `request`: the request to serve (renamed back to its real name), or
    /// the error text (without `-` and CRLF) to refuse it with.
    pub fn check(&self, request: Request) -> Result<Request, String> {
        let Some(name) = request.args().first().map(|n| n.to_ascii_lowercase()) else {
            return Ok(request);
        };
        if let Some(real) = self.renamed.get(&name) {
            if self.deny.contains(&real[..]) {
                return Err(denied(real));
            }
            let args = std::iter::once(real.clone()).chain(request.args()[1..].iter().cloned());
            return Ok(Request::from_args(args));
        }
        if self.hidden.contains(&name) {
            return Err(format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(&request.args()[0])
            ));
        }
        if self.deny.contains(&name) {
            return Err(denied(&name));
        }
        Ok(request)
    }
}

fn denied(name: &[u8]) -> String {
    format!(
        "ERR slotgate: '{}' is disabled by configuration (commands.deny)",
        String::from_utf8_lossy(name).to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(deny: &[&str], rename: &[(&str, &str)]) -> CommandPolicy {
        let config = CommandsConfig {
            deny: deny.iter().map(|s| s.to_string()).collect(),
            rename: rename
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..CommandsConfig::default()
        };
        CommandPolicy::from_config(&config).unwrap()
    }

    fn check(p: &CommandPolicy, words: &[&str]) -> Result<Vec<Bytes>, String> {
        let request =
            Request::from_args(words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())));
        p.check(request).map(|r| r.args().to_vec())
    }

    #[test]
    fn deny_and_rename() {
        let p = policy(&["keys"], &[("FLUSHALL", "nuke"), ("CONFIG", "")]);
        assert!(check(&p, &["KEYS", "*"])
            .unwrap_err()
            .contains("commands.deny"));
        assert_eq!(
            check(&p, &["NUKE"]).unwrap(),
            [Bytes::from_static(b"flushall")]
        );
        assert!(check(&p, &["FLUSHALL"])
            .unwrap_err()
            .starts_with("ERR unknown command 'FLUSHALL'"));
        assert!(check(&p, &["config", "get", "x"])
            .unwrap_err()
            .contains("unknown command"));
        assert_eq!(check(&p, &["GET", "k"]).unwrap().len(), 2);
        assert!(CommandPolicy::from_config(&CommandsConfig::default()).is_none());
    }
}
