//! The proxy-side command policy: a deny list and a rename map, the answer to Redis'
//! `rename-command FLUSHALL ""` for operators who cannot touch every node's config.
//!
//! `[commands] deny = ["KEYS", "FLUSHALL", "CLIENT KILL"]` refuses those commands (or that one
//! subcommand) with an error naming the setting. `[commands.rename] FLUSHALL =
//! "DANGER-FLUSHALL"` makes clients call the new name (slotgate sends the real one to Redis)
//! and the old name unknown; renaming to `""` disables a command. Checked once per request
//! only when a policy is configured.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::config::CommandsConfig;
use crate::resp::Request;

/// A configured deny list and rename map.
#[derive(Debug, Default)]
pub struct CommandPolicy {
    /// Lowercase names (the real ones) that are refused: commands, and subcommands as
    /// `client|kill`.
    deny: HashSet<Vec<u8>>,
    /// Whether `deny` holds a subcommand (then the second argument is looked at too).
    denies_subcommands: bool,
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
        let deny: HashSet<Vec<u8>> = config
            .denied_names()
            .into_iter()
            .map(String::into_bytes)
            .collect();
        Some(CommandPolicy {
            denies_subcommands: deny.iter().any(|d| d.contains(&b'|')),
            deny,
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
        let Some(name) = request.arg(0).map(|n| n.to_ascii_lowercase()) else {
            return Ok(request);
        };
        if let Some(real) = self.renamed.get(&name) {
            if let Some(refused) = self.denied(real, &request) {
                return Err(refused);
            }
            let args = request.args();
            let renamed = std::iter::once(&real[..]).chain(args[1..].iter().copied());
            return Ok(Request::from_args(renamed));
        }
        if self.hidden.contains(&name) {
            return Err(format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(request.arg(0).unwrap_or_default())
            ));
        }
        match self.denied(&name, &request) {
            Some(refused) => Err(refused),
            None => Ok(request),
        }
    }

    /// The error for `request` (whose real name is `name`, lower case) if the deny list holds
    /// its command or its subcommand.
    fn denied(&self, name: &[u8], request: &Request) -> Option<String> {
        if self.deny.contains(name) {
            return Some(denied(name));
        }
        let sub = request.arg(1).filter(|_| self.denies_subcommands)?;
        let mut full = Vec::with_capacity(name.len() + 1 + sub.len());
        full.extend_from_slice(name);
        full.push(b'|');
        full.extend(sub.iter().map(u8::to_ascii_lowercase));
        self.deny.contains(&full).then(|| denied(&full))
    }
}

/// The refusal of `name` (`client|kill` is shown as `CLIENT KILL`).
fn denied(name: &[u8]) -> String {
    format!(
        "ERR slotgate: '{}' is disabled by configuration (commands.deny)",
        String::from_utf8_lossy(name)
            .to_uppercase()
            .replace('|', " ")
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

    fn check(p: &CommandPolicy, words: &[&str]) -> Result<Vec<Vec<u8>>, String> {
        let request =
            Request::from_args(words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())));
        p.check(request)
            .map(|r| r.args().iter().map(|a| a.to_vec()).collect())
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

    #[test]
    fn one_subcommand_can_be_denied() {
        let p = policy(&["CLIENT KILL", "config  get"], &[("CLIENT", "conn")]);
        assert_eq!(
            check(&p, &["CONN", "kill", "id", "1"]).unwrap_err(),
            "ERR slotgate: 'CLIENT KILL' is disabled by configuration (commands.deny)"
        );
        assert_eq!(check(&p, &["conn", "list"]).unwrap().len(), 2);
        assert!(check(&p, &["CONFIG", "GET", "maxmemory"])
            .unwrap_err()
            .contains("'CONFIG GET'"));
        assert_eq!(check(&p, &["CONFIG", "SET", "a", "b"]).unwrap().len(), 4);
        assert_eq!(check(&p, &["CONFIG"]).unwrap().len(), 1);
    }
}
