//! Backend auth per pool: `AUTH password` (requirepass) and `AUTH user password` (Redis 6
//! ACL) on every new backend connection; a refused password gives a clear error that does
//! not contain it.

mod common;

use std::time::Duration;

use common::{client, pool_config, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::Secret;
use slotgate::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_authenticate_with_password_or_acl_user() {
    let servers = standalone_servers(2);
    // p0: requirepass. p1: an ACL user, and a default user that needs another password.
    let mut d0 = client(servers[0].addr().parse().unwrap()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("pass-zero")
        .query_async(&mut d0)
        .await
        .unwrap();
    let mut d1 = client(servers[1].addr().parse().unwrap()).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">pass-one")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut d1)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("other")
        .query_async(&mut d1)
        .await
        .unwrap();

    let mut config = pool_config(&servers, &[]);
    config.backend.reconnect_backoff_ms = 50;
    let pools: Vec<String> = config.pools.keys().cloned().collect();
    config.pools.get_mut(&pools[0]).unwrap().password = Some(Secret::new("pass-zero"));
    let p1 = config.pools.get_mut(&pools[1]).unwrap();
    p1.username = Some("app".into());
    p1.password = Some(Secret::new("pass-one"));
    let proxy = Proxy::start(config.clone()).expect("start slotgate");
    let mut c = client(proxy.local_addr()).await;
    for i in 0..50 {
        let key = format!("auth:{i}");
        let _: () = c
            .set(&key, i)
            .await
            .expect("SET through authenticated pools");
        let v: i64 = c.get(&key).await.unwrap();
        assert_eq!(v, i);
    }
    let size: usize = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 50);

    // A wrong password (reloaded: new connections are opened with it) fails clearly, and
    // the error does not echo the password.
    let mut wrong = config.clone();
    wrong.pools.get_mut(&pools[0]).unwrap().password = Some(Secret::new("not-the-password"));
    proxy.reload(wrong).unwrap();
    let key0 = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| slotgate::slot::Slot::of(k.as_bytes()).get() < 8192)
        .unwrap();
    let err = c
        .get::<_, Option<String>>(&key0)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused authentication"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    // Back to the right password: served again once the short back-off has passed.
    proxy.reload(config).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: Option<String> = c
        .get(&key0)
        .await
        .expect("served after fixing the password");
}

/// Dedicated connections (blocking commands, transactions, pub/sub) authenticate too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_commands_authenticate_in_pool_mode() {
    let servers = standalone_servers(2);
    for server in &servers {
        let mut direct = client(server.addr().parse().unwrap()).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("pw")
            .query_async(&mut direct)
            .await
            .unwrap();
    }
    let mut config = pool_config(&servers, &[]);
    for pool in config.pools.values_mut() {
        pool.password = Some(Secret::new("pw"));
    }
    let proxy = Proxy::start(config).expect("start slotgate");
    let mut c = client(proxy.local_addr()).await;

    let (ok, n): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{a}x")
        .arg(1)
        .cmd("INCR")
        .arg("{a}x")
        .query_async(&mut c)
        .await
        .expect("MULTI/EXEC on an authenticated dedicated connection");
    assert_eq!((ok.as_str(), n), ("OK", 2));

    let _: () = c.rpush("{a}list", "v").await.unwrap();
    let popped: (String, String) = redis::cmd("BLPOP")
        .arg("{a}list")
        .arg(1)
        .query_async(&mut c)
        .await
        .expect("BLPOP on an authenticated dedicated connection");
    assert_eq!(popped.1, "v");

    let sub_client = redis::Client::open(format!("redis://{}/", proxy.local_addr())).unwrap();
    let mut pubsub = sub_client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("auth-ch").await.unwrap();
    let receivers: i64 = c.publish("auth-ch", "m").await.unwrap();
    assert_eq!(receivers, 1);
    let mut stream = pubsub.on_message();
    let msg = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    .expect("message in time")
    .unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "m");
}
