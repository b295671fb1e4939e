use super::*;

fn text(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

/// Field `name` of an INFO text.
fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
        .trim_end()
}

#[test]
fn memory_sums_bytes_and_computes_ratios_and_human_sizes() {
    let a = text(
        "# Memory\nused_memory:1000000\nused_memory_human:976.56K\nused_memory_rss:3000000\n\
         used_memory_peak:2000000\nused_memory_peak_perc:50.00%\nused_memory_startup:500000\n\
         used_memory_dataset:400000\nused_memory_dataset_perc:80.00%\nallocator_allocated:1000\n\
         allocator_active:1500\nallocator_resident:3000\nallocator_frag_ratio:1.50\n\
         allocator_rss_ratio:2.00\nrss_overhead_ratio:1.10\nrss_overhead_bytes:300\n\
         mem_fragmentation_ratio:3.00\nmem_fragmentation_bytes:2000000\ntotal_system_memory:8000\n\
         number_of_cached_scripts:2\nmaxmemory:100\nmaxmemory_human:100B\n\
         maxmemory_policy:noeviction\nmem_allocator:jemalloc-5.3.0\n",
    );
    let b = text(
        "# Memory\nused_memory:3000000\nused_memory_human:2.86M\nused_memory_rss:5000000\n\
         used_memory_peak:4000000\nused_memory_peak_perc:75.00%\nused_memory_startup:500000\n\
         used_memory_dataset:2000000\nused_memory_dataset_perc:80.00%\nallocator_allocated:3000\n\
         allocator_active:3500\nallocator_resident:5000\nallocator_frag_ratio:1.17\n\
         allocator_rss_ratio:1.43\nrss_overhead_ratio:1.00\nrss_overhead_bytes:-100\n\
         mem_fragmentation_ratio:1.67\nmem_fragmentation_bytes:2000000\ntotal_system_memory:8000\n\
         number_of_cached_scripts:2\nmaxmemory:200\nmaxmemory_human:200B\n\
         maxmemory_policy:allkeys-lru\nmem_allocator:jemalloc-5.3.0\nonly_here:7\n",
    );
    let merged = merge_section(&[a, b], "# Memory");
    assert!(
        merged.starts_with("# Memory\r\nused_memory:4000000\r\n"),
        "{merged}"
    );
    assert_eq!(field(&merged, "used_memory_human"), "3.81M");
    assert_eq!(field(&merged, "used_memory_rss"), "8000000");
    assert_eq!(field(&merged, "used_memory_peak"), "6000000");
    assert_eq!(field(&merged, "used_memory_peak_perc"), "66.67%");
    // 2400000 * 100 / (4000000 - 1000000)
    assert_eq!(field(&merged, "used_memory_dataset_perc"), "80.00%");
    assert_eq!(field(&merged, "allocator_frag_ratio"), "1.25");
    assert_eq!(field(&merged, "allocator_rss_ratio"), "1.60");
    // (8000 + 200) / 8000
    assert_eq!(field(&merged, "rss_overhead_ratio"), "1.02");
    // 8000000 / (8000000 - 4000000)
    assert_eq!(field(&merged, "mem_fragmentation_ratio"), "2.00");
    assert_eq!(field(&merged, "total_system_memory"), "8000");
    assert_eq!(field(&merged, "number_of_cached_scripts"), "2");
    assert_eq!(field(&merged, "maxmemory"), "300");
    assert_eq!(field(&merged, "maxmemory_human"), "300B");
    assert_eq!(field(&merged, "maxmemory_policy"), "noeviction");
    assert_eq!(field(&merged, "mem_allocator"), "jemalloc-5.3.0");
    assert_eq!(field(&merged, "only_here"), "7");
    assert!(merged.ends_with("only_here:7\r\n"));
}

#[test]
fn maxmemory_without_limit_on_one_master_is_no_limit() {
    let a = text("# Memory\nmaxmemory:100\nmaxmemory_human:100B\n");
    let b = text("# Memory\nmaxmemory:0\nmaxmemory_human:0B\n");
    let merged = merge_section(&[a, b], "# Memory");
    assert_eq!(field(&merged, "maxmemory"), "0");
    assert_eq!(field(&merged, "maxmemory_human"), "0B");
}

#[test]
fn persistence_stats_cpu_and_latency_merge_by_meaning() {
    let a = text(
        "# Persistence\nloading:0\nrdb_changes_since_last_save:5\nrdb_last_save_time:1000\n\
         rdb_last_bgsave_status:ok\naof_last_write_status:ok\nrdb_last_bgsave_time_sec:-1\n\
         current_fork_perc:0.00\n\
         # Stats\nkeyspace_hits:10\nkeyspace_misses:2\nexpired_stale_perc:1.50\n\
         instantaneous_input_kbps:0.50\nlatest_fork_usec:100\n\
         # CPU\nused_cpu_sys:1.500000\nused_cpu_user:0.250000\n\
         # Latencystats\nlatency_percentiles_usec_get:p50=1.003,p99=5.023,p99.9=9.087\n",
    );
    let b = text(
        "# Persistence\nloading:1\nrdb_changes_since_last_save:7\nrdb_last_save_time:900\n\
         rdb_last_bgsave_status:err\naof_last_write_status:ok\nrdb_last_bgsave_time_sec:3\n\
         current_fork_perc:12.50\n\
         # Stats\nkeyspace_hits:5\nkeyspace_misses:1\nexpired_stale_perc:0.25\n\
         instantaneous_input_kbps:1.25\nlatest_fork_usec:50\n\
         # CPU\nused_cpu_sys:0.500000\nused_cpu_user:0.125000\n\
         # Latencystats\nlatency_percentiles_usec_get:p50=2.007,p99=3.007,p99.9=20.031\n\
         latency_percentiles_usec_set:p50=1.003\n",
    );
    let both = [a, b];
    let p = merge_section(&both, "# Persistence");
    assert_eq!(field(&p, "loading"), "1");
    assert_eq!(field(&p, "rdb_changes_since_last_save"), "12");
    assert_eq!(field(&p, "rdb_last_save_time"), "900");
    assert_eq!(field(&p, "rdb_last_bgsave_status"), "err");
    assert_eq!(field(&p, "aof_last_write_status"), "ok");
    assert_eq!(field(&p, "rdb_last_bgsave_time_sec"), "3");
    assert_eq!(field(&p, "current_fork_perc"), "12.50");
    let s = merge_section(&both, "# Stats");
    assert_eq!(field(&s, "keyspace_hits"), "15");
    assert_eq!(field(&s, "keyspace_misses"), "3");
    assert_eq!(field(&s, "expired_stale_perc"), "1.50");
    assert_eq!(field(&s, "instantaneous_input_kbps"), "1.75");
    assert_eq!(field(&s, "latest_fork_usec"), "100");
    let c = merge_section(&both, "# CPU");
    assert_eq!(field(&c, "used_cpu_sys"), "2.000000");
    assert_eq!(field(&c, "used_cpu_user"), "0.375000");
    let l = merge_section(&both, "# Latencystats");
    assert_eq!(
        field(&l, "latency_percentiles_usec_get"),
        "p50=2.007,p99=5.023,p99.9=20.031"
    );
    assert_eq!(field(&l, "latency_percentiles_usec_set"), "p50=1.003");
}

#[test]
fn human_sizes_as_redis_prints_them() {
    assert_eq!(bytes_to_human(0), "0B");
    assert_eq!(bytes_to_human(1023), "1023B");
    assert_eq!(bytes_to_human(916_256), "894.78K");
    assert_eq!(bytes_to_human(6_688_768), "6.38M");
    assert_eq!(bytes_to_human(25_276_190_720), "23.54G");
    assert_eq!(bytes_to_human(1 << 40), "1.00T");
}

#[test]
fn proxy_sections_come_first_where_both_have_one_and_in_redis_order() {
    let proxy = "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n\r\n# Stats\r\n\
                 total_commands_processed:5\r\ninstantaneous_ops_per_sec:1\r\n\r\n# Proxy\r\n\
                 proxy_workers:2\r\n\r\n# Replication\r\nrole:master\r\n\r\n# Cluster\r\n\
                 cluster_enabled:0\r\n\r\n# Migration\r\nmigration_moves:0\r\n\r\n";
    let nodes = "# Memory\r\nused_memory:10\r\n\r\n# Stats\r\ntotal_commands_processed:99\r\n\
                 keyspace_hits:3\r\n\r\n# CPU\r\nused_cpu_sys:1.000000\r\n\r\n# Errorstats\r\n\
                 \r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";
    assert_eq!(
        put_together(proxy, nodes),
        "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n\r\n\
         # Memory\r\nused_memory:10\r\n\r\n\
         # Stats\r\ntotal_commands_processed:5\r\ninstantaneous_ops_per_sec:1\r\nkeyspace_hits:3\r\n\r\n\
         # Proxy\r\nproxy_workers:2\r\n\r\n\
         # Replication\r\nrole:master\r\n\r\n\
         # CPU\r\nused_cpu_sys:1.000000\r\n\r\n\
         # Errorstats\r\n\r\n\
         # Cluster\r\ncluster_enabled:0\r\n\r\n\
         # Migration\r\nmigration_moves:0\r\n\r\n\
         # Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    );
    // Only node sections asked: no proxy text.
    assert_eq!(
        put_together("", "# Keyspace\r\ndb0:keys=1\r\n"),
        "# Keyspace\r\ndb0:keys=1\r\n"
    );
}

#[test]
fn integers_sum_exactly_and_mixed_numbers_keep_the_first_format() {
    let a = text("# Stats\ntotal_net_repl_input_bytes:9007199254740993\nodd:0\n");
    let b = text("# Stats\ntotal_net_repl_input_bytes:2\nodd:0.50\n");
    let merged = merge_section(&[a, b], "# Stats");
    assert_eq!(
        field(&merged, "total_net_repl_input_bytes"),
        "9007199254740995"
    );
    assert_eq!(field(&merged, "odd"), "0");
}
