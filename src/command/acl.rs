//! ACL-style command rules (`+@all`, `-@dangerous`, `+get`, `-config|set`, `allcommands`,
//! `nocommands`), as `[auth]` users carry them: parsed and checked against the command table,
//! and applied to one command. Pure.

use super::CommandSpec;

/// One command rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `+name` / `-name`: a command, or `container|sub` for one subcommand.
    Command {
        /// `+` or `-`.
        allow: bool,
        /// The command (`get`) or subcommand (`config|get`).
        name: String,
    },
    /// `+@category` / `-@category` (`@all` for every command).
    Category {
        /// `+` or `-`.
        allow: bool,
        /// The category without its `@`.
        category: String,
    },
}

impl Rule {
    /// Whether this rule allows (`Some(true)`) or denies (`Some(false)`) `spec`, or `None`
    /// when it does not apply to it.
    pub fn verdict(&self, spec: &CommandSpec) -> Option<bool> {
        let container = spec.name.split('|').next().unwrap_or(spec.name);
        match self {
            Rule::Command { allow, name } if name == spec.name || name == container => Some(*allow),
            Rule::Category { allow, category }
                if category == "all"
                    || spec
                        .acl_categories
                        .iter()
                        .any(|c| c.strip_prefix('@') == Some(category)) =>
            {
                Some(*allow)
            }
            _ => None,
        }
    }
}

/// Parse one command rule; `Err` says why it is not one.
pub fn parse_rule(rule: &str) -> Result<Rule, String> {
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
            || super::all().iter().any(|c| {
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
    let known = super::all().iter().any(|c| {
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
