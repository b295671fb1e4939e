//! `backend.kill_slow_scripts`: a script that outlives `backend.request_timeout_ms` on a
//! pipelined connection is killed by slotgate, with SCRIPT KILL (EVAL, EVALSHA and their `_RO`
//! forms) or FUNCTION KILL (FCALL, FCALL_RO) sent on a connection of its own: the busy node
//! does not read the script's connection, but it answers others.
//!
//! ```text
//!  script's reply late ──► SCRIPT KILL on a new connection ──► +OK      the script's client gets
//!                                                          │            Redis' "killed" error
//!                                                          ├► NOTBUSY  it just ended: its reply
//!                                                          │            is on the way
//!                                                          └► UNKILLABLE (it wrote) or no answer:
//!                                                               the script's connection is given
//!                                                               up, its client gets a timeout
//! ```
//!
//! Only the reading of which command a request is ([`kill_command`]) is pure; [`kill`] is the
//! one exchange with the node.

use std::sync::Arc;
use std::time::Duration;

use crate::resp::{Frame, Limits};
use crate::tls::BackendTls;

use super::credentials::Credentials;
use super::oneshot;

/// The command that stops a running script of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCommand {
    /// SCRIPT KILL: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO.
    Script,
    /// FUNCTION KILL: FCALL, FCALL_RO.
    Function,
}

impl KillCommand {
    /// The command's words.
    fn args(self) -> [&'static str; 2] {
        match self {
            KillCommand::Script => ["SCRIPT", "KILL"],
            KillCommand::Function => ["FUNCTION", "KILL"],
        }
    }
}

/// What the node answered to the kill.
#[derive(Debug, PartialEq, Eq)]
pub enum KillOutcome {
    /// `+OK`: the script was stopped; its client gets Redis' error for it.
    Killed,
    /// NOTBUSY: nothing runs any more, so the script's reply is on its way.
    NotBusy,
    /// The node refused (UNKILLABLE: the script wrote) or could not be asked; the text says
    /// which.
    Refused(String),
}

/// Which kill stops the script `request` (a client request as RESP) runs, or `None` when it
/// is not a script. Reads only the command name, once, when a reply is late.
pub fn kill_command(request: &[u8]) -> Option<KillCommand> {
    let name = command_name(request)?;
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if ["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"]
        .into_iter()
        .any(is)
    {
        Some(KillCommand::Script)
    } else if ["FCALL", "FCALL_RO"].into_iter().any(is) {
        Some(KillCommand::Function)
    } else {
        None
    }
}

/// The first argument of a multibulk request (`*N\r\n$L\r\nNAME\r\n…`).
fn command_name(request: &[u8]) -> Option<&[u8]> {
    let rest = request.strip_prefix(b"*")?;
    let rest = &rest[rest.iter().position(|&b| b == b'\n')? + 1..];
    let rest = rest.strip_prefix(b"$")?;
    let eol = rest.iter().position(|&b| b == b'\n')?;
    let len: usize = std::str::from_utf8(rest.get(..eol)?.strip_suffix(b"\r")?)
        .ok()?
        .parse()
        .ok()?;
    rest.get(eol + 1..eol + 1 + len)
}

/// Send `command` to the node at `addr` on a connection of its own (authenticated with
/// `auth`, over `tls`), the whole exchange within `timeout`.
pub async fn kill(
    addr: &str,
    auth: Option<&Arc<Credentials>>,
    tls: Option<&BackendTls>,
    command: KillCommand,
    timeout: Duration,
    limits: Limits,
) -> KillOutcome {
    let replies = oneshot::commands(addr, auth, &[&command.args()], timeout, limits, tls).await;
    match replies.as_deref() {
        Ok([Frame::Simple(_)]) => KillOutcome::Killed,
        Ok([Frame::Error(e)]) if e.starts_with(b"NOTBUSY") => KillOutcome::NotBusy,
        Ok([Frame::Error(e)]) => KillOutcome::Refused(String::from_utf8_lossy(e).into_owned()),
        Ok(other) => KillOutcome::Refused(format!("unexpected reply {other:?}")),
        Err(e) => KillOutcome::Refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_functions_are_told_apart_by_their_command_name() {
        let eval = b"*3\r\n$4\r\nEVAL\r\n$17\r\nwhile true do end\r\n$1\r\n0\r\n";
        assert_eq!(kill_command(eval), Some(KillCommand::Script));
        assert_eq!(
            kill_command(b"*3\r\n$10\r\nevalsha_ro\r\n$1\r\nx\r\n$1\r\n0\r\n"),
            Some(KillCommand::Script)
        );
        assert_eq!(
            kill_command(b"*3\r\n$5\r\nFCall\r\n$1\r\nf\r\n$1\r\n0\r\n"),
            Some(KillCommand::Function)
        );
        assert_eq!(
            kill_command(b"*3\r\n$8\r\nFCALL_RO\r\n$1\r\nf\r\n$1\r\n0\r\n"),
            Some(KillCommand::Function)
        );
        assert_eq!(kill_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), None);
        assert_eq!(kill_command(b"*1\r\n$5\r\nEVAL"), None, "cut short");
        assert_eq!(kill_command(b"*1\r\n$x\r\nEVAL\r\n"), None, "bad length");
        assert_eq!(kill_command(b""), None);
    }
}
