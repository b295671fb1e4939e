//! Credentials a backend connection presents with `AUTH` before any request (Redis 6 ACL
//! user + password, or a password alone for `requirepass`).
//!
//! The password never appears in `Debug` output or in errors: a failed AUTH is reported with
//! the server's own error line, which does not echo it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Secret;
use crate::resp::Request;

/// Username (optional) and password for one backend.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: Option<String>,
    password: String,
}

impl Credentials {
    /// Credentials for `AUTH [username] password`.
    pub fn new(username: Option<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username,
            password: password.into(),
        }
    }

    /// The credentials a config section names (`username`, `password`): `None` without a
    /// password (validation refuses a username alone).
    pub fn configured(
        username: Option<&str>,
        password: Option<&Secret>,
    ) -> Option<Arc<Credentials>> {
        password.map(|password| {
            Arc::new(Credentials::new(
                username.map(str::to_string),
                password.expose(),
            ))
        })
    }

    /// The ACL user, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The arguments `MIGRATE` takes to log in on its target: `AUTH password`, or
    /// `AUTH2 username password` for an ACL user.
    pub fn migrate_args(&self) -> Vec<Bytes> {
        let password = Bytes::copy_from_slice(self.password.as_bytes());
        match &self.username {
            Some(user) => vec![
                Bytes::from_static(b"AUTH2"),
                Bytes::copy_from_slice(user.as_bytes()),
                password,
            ],
            None => vec![Bytes::from_static(b"AUTH"), password],
        }
    }

    /// The `AUTH` request as RESP.
    pub fn auth_request(&self) -> Bytes {
        let mut args = vec![Bytes::from_static(b"AUTH")];
        if let Some(user) = &self.username {
            args.push(Bytes::copy_from_slice(user.as_bytes()));
        }
        args.push(Bytes::copy_from_slice(self.password.as_bytes()));
        Request::from_args(args).raw().clone()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_request_and_redacted_debug() {
        let c = Credentials::new(Some("app".into()), "s3cret");
        assert_eq!(
            &c.auth_request()[..],
            b"*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\ns3cret\r\n"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = Credentials::new(None, "pw");
        assert_eq!(&c.auth_request()[..], b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    }
}
