//! Topology truth: whom the proxy believes about which node serves which slot.

use crate::common;

use slotgate::local_redis::{ClusterOptions, LocalCluster};
use slotgate::Proxy;

/// A node with an older view (lower current epoch) that claims every slot must not win over
/// the majority, even when it is the first seed asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_with_a_lower_epoch_loses() {
    let cluster = LocalCluster::start(ClusterOptions::default()).unwrap();
    // A lone cluster node that claims all 16384 slots at epoch 0: what a node cut off from the
    // cluster since before the last failovers looks like from outside.
    let impostor = common::lone_cluster_node(0, 16383).await;
    let mut direct = common::client(impostor.addr().parse().unwrap()).await;

    let mut seeds = vec![impostor.addr()];
    seeds.extend(cluster.seeds());
    let proxy = Proxy::start(common::proxy_config(seeds)).unwrap();
    let table = proxy.topology().table();
    let masters: Vec<&str> = table.shards().iter().map(|s| &*s.master).collect();
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert!(!masters.contains(&impostor.addr().as_str()), "{masters:?}");

    let mut c = common::client(proxy.local_addr()).await;
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("truth:{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let on_impostor: i64 = redis::cmd("DBSIZE").query_async(&mut direct).await.unwrap();
    assert_eq!(on_impostor, 0, "writes went to the stale node");
}
