//! Node addresses by name: `HOST:PORT` where the host may be a DNS name (a Kubernetes pod
//! behind a headless service, a Redis 7 node announcing `cluster-announce-hostname`).
//!
//! A node is identified by its address *as written* — the name, never the IP it resolves to —
//! so a pod that comes back on a new IP under the same name is the same node to the slot table,
//! the pools, the health view and the metrics. The name is resolved again on every connect
//! ([`lookup`]); the topology's name watch re-resolves the table's names on a timer and tells
//! the workers to replace connections that still go to an address the name no longer gives.

use std::net::{IpAddr, SocketAddr};

use super::BackendError;

/// The host part of `addr` (`HOST:PORT`, `[V6]:PORT`), brackets removed.
pub fn host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// True when `addr`'s host is a name (not an IP literal): what it reaches may change.
pub fn is_name(addr: &str) -> bool {
    let host = host(addr);
    !host.is_empty() && host.parse::<IpAddr>().is_err()
}

/// The socket addresses of `addr` now: an IP literal as is (no system call), a name through
/// the system resolver (`getaddrinfo`: `/etc/hosts`, DNS …) on tokio's blocking pool. A name
/// that does not resolve, or to nothing, is [`BackendError::Resolve`].
pub async fn lookup(addr: &str) -> Result<Vec<SocketAddr>, BackendError> {
    if let Ok(literal) = addr.parse::<SocketAddr>() {
        return Ok(vec![literal]);
    }
    let failed = |reason: String| BackendError::Resolve {
        addr: addr.to_string(),
        reason,
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    if found.is_empty() {
        return Err(failed("no address".into()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_names() {
        assert_eq!(host("10.0.0.1:6379"), "10.0.0.1");
        assert_eq!(host("[::1]:6379"), "::1");
        assert_eq!(
            host("redis-0.redis.default.svc:6379"),
            "redis-0.redis.default.svc"
        );
        assert!(!is_name("10.0.0.1:6379"));
        assert!(!is_name("[::1]:6379"));
        assert!(is_name("localhost:6379"));
        assert!(is_name("redis-0.redis:6379"));
    }

    #[tokio::test]
    async fn literals_pass_names_resolve_and_unknown_names_are_resolve_errors() {
        assert_eq!(
            lookup("127.0.0.1:7000").await.unwrap(),
            vec!["127.0.0.1:7000".parse().unwrap()]
        );
        let local = lookup("localhost:7000").await.unwrap();
        assert!(local
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7000));
        // `.invalid` never resolves (RFC 6761).
        let error = lookup("no-such-node.invalid:7000").await.unwrap_err();
        assert_eq!(error.kind(), "resolve", "{error}");
        assert!(
            error
                .to_string()
                .starts_with("backend no-such-node.invalid:7000 does not resolve ("),
            "{error}"
        );
    }
}
