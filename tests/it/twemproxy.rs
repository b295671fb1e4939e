//! Twemproxy-compatible placement: keys written through a real `nutcracker` (Debian's
//! twemproxy 0.5) are found by slotgate on the same standalone servers, configured with the
//! same servers and `distribution: ketama`, `hash`, `hash_tag`. A nutcracker user can swap
//! binaries with no data movement.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{client, pool_config, standalone_servers};
use redis::AsyncCommands;
use slotgate::config::{Config, Distribution};
use slotgate::local_redis::{free_port, RedisServer};
use slotgate::placement::KeyHash;
use slotgate::topology::pools::table_from_config;
use slotgate::topology::SlotTable;
use slotgate::Proxy;

/// One nutcracker pool of the test: its hash, per-server weights and names.
struct PoolSpec {
    name: &'static str,
    hash: KeyHash,
    tag: Option<&'static str>,
    weights: [u32; 3],
    names: Option<[&'static str; 3]>,
}

const SPECS: &[PoolSpec] = &[
    PoolSpec {
        name: "fnv",
        hash: KeyHash::Fnv1a64,
        tag: Some("{}"),
        weights: [1, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "md5w",
        hash: KeyHash::Md5,
        tag: None,
        weights: [1, 2, 3],
        names: None,
    },
    PoolSpec {
        name: "murmurn",
        hash: KeyHash::Murmur,
        tag: Some("{}"),
        weights: [1, 1, 1],
        names: Some(["alpha", "beta", "gamma"]),
    },
    PoolSpec {
        name: "crc32a",
        hash: KeyHash::Crc32a,
        tag: None,
        weights: [2, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "crc32",
        hash: KeyHash::Crc32,
        tag: None,
        weights: [1, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "oaat",
        hash: KeyHash::OneAtATime,
        tag: None,
        weights: [1, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "fnv164",
        hash: KeyHash::Fnv164,
        tag: None,
        weights: [1, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "fnv1a32",
        hash: KeyHash::Fnv1a32,
        tag: None,
        weights: [1, 1, 1],
        names: None,
    },
    PoolSpec {
        name: "fnv132",
        hash: KeyHash::Fnv132,
        tag: None,
        weights: [1, 1, 1],
        names: None,
    },
];

/// A `nutcracker` child process, killed (by its PID, through its `Child`) on drop.
pub(crate) struct Nutcracker {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start nutcracker with one pool per spec (listening on `ports[i]`) over `servers`.
fn start_nutcracker(servers: &[RedisServer], ports: &[u16]) -> Nutcracker {
    let mut yaml = String::new();
    for (spec, port) in SPECS.iter().zip(ports) {
        yaml.push_str(&format!(
            "{}:\n  listen: 127.0.0.1:{port}\n  hash: {}\n  distribution: ketama\n  redis: true\n  \
             auto_eject_hosts: false\n  preconnect: false\n  timeout: 2000\n",
            spec.name,
            spec.hash.name()
        ));
        if let Some(tag) = spec.tag {
            yaml.push_str(&format!("  hash_tag: \"{tag}\"\n"));
        }
        yaml.push_str("  servers:\n");
        for (i, server) in servers.iter().enumerate() {
            let name = spec.names.map(|n| format!(" {}", n[i])).unwrap_or_default();
            yaml.push_str(&format!(
                "   - {}:{}{name}\n",
                server.addr(),
                spec.weights[i]
            ));
        }
    }
    run_nutcracker(&yaml, ports)
}

/// Run nutcracker with the configuration `yaml`, whose pools listen on `ports`; returns once
/// every port accepts connections.
pub(crate) fn run_nutcracker(yaml: &str, ports: &[u16]) -> Nutcracker {
    let dir = std::env::temp_dir().join(format!(
        "slotgate-nutcracker-{}-{}",
        std::process::id(),
        ports[0]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nutcracker.yml");
    std::fs::write(&conf, yaml).unwrap();
    let stats_port = free_port(false).unwrap();
    let child = Command::new("/usr/sbin/nutcracker")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("nutcracker.pid"))
        .arg("-o")
        .arg(dir.join("nutcracker.log"))
        .arg("-s")
        .arg(stats_port.to_string())
        .arg("-a")
        .arg("127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start /usr/sbin/nutcracker (apt-get install nutcracker)");
    let nutcracker = Nutcracker { child, dir };
    let what = format!("nutcracker listening on {ports:?}:\n{yaml}");
    common::eventually_blocking(&what, Duration::from_secs(10), || {
        let closed = ports
            .iter()
            .filter(|&&port| TcpStream::connect(("127.0.0.1", port)).is_err());
        common::check(closed.copied().collect::<Vec<u16>>(), |c| c.is_empty())
    });
    nutcracker
}

/// slotgate's config for `spec` over `servers` (pools p0, p1, p2 in server order).
fn slotgate_config(servers: &[RedisServer], spec: &PoolSpec) -> Config {
    let mut config = pool_config(servers, &[]);
    config.placement.distribution = Distribution::Ketama;
    config.placement.hash = spec.hash;
    config.placement.hash_tag = spec.tag.map(String::from);
    for (i, pool) in config.pools.values_mut().enumerate() {
        pool.weight = spec.weights[i];
        pool.ketama_name = spec.names.map(|n| n[i].to_string());
    }
    config
}

/// The keys of a run: plain, hash-tagged, and some with bytes >= 0x80 (sign-extension quirks).
fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| match i % 10 {
            0 => format!("{prefix}:{{user:{}}}:profile", i / 10).into_bytes(),
            1 => {
                let mut k = format!("{prefix}:bin:{i}:").into_bytes();
                k.extend_from_slice(&[0xc3, 0xa9, 0xff, 0x80, (i % 256) as u8]);
                k
            }
            _ => format!("{prefix}:key:{i}").into_bytes(),
        })
        .collect()
}

/// Which server (index into `servers`) slotgate's `table` names for `key`.
fn placed_on(table: &SlotTable, servers: &[RedisServer], key: &[u8]) -> usize {
    let unit = table.placement().unit_of(key);
    let master = &table.shards()[table.shard_of(unit).unwrap()].master;
    servers.iter().position(|s| *s.addr() == **master).unwrap()
}

/// SET every key through nutcracker, 100 per pipelined write. Raw RESP: nutcracker closes
/// connections that send `CLIENT SETINFO`, which the `redis` crate does on connect.
fn write_through(addr: SocketAddr, keys: &[Vec<u8>]) {
    let requests: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|key| vec![b"SET".to_vec(), key.clone(), value_of(key)])
        .collect();
    send_all(addr, &requests);
}

/// Send `requests` (each answered `+OK`) to `addr`, 100 per pipelined write, in raw RESP.
pub(crate) fn send_all(addr: SocketAddr, requests: &[Vec<Vec<u8>>]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for chunk in requests.chunks(100) {
        let mut out = Vec::new();
        for args in chunk {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for arg in args {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
        }
        stream.write_all(&out).unwrap();
        let want = b"+OK\r\n".repeat(chunk.len());
        let mut got = vec![0u8; want.len()];
        stream
            .read_exact(&mut got)
            .expect("replies from nutcracker");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}

fn value_of(key: &[u8]) -> Vec<u8> {
    let mut v = b"v=".to_vec();
    v.extend_from_slice(key);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slotgate_finds_every_key_nutcracker_wrote() {
    let servers = standalone_servers(3);
    let ports: Vec<u16> = SPECS.iter().map(|_| free_port(false).unwrap()).collect();
    let _nutcracker = start_nutcracker(&servers, &ports);
    let mut direct = Vec::new();
    for s in &servers {
        direct.push(client(s.addr().parse().unwrap()).await);
    }

    for (spec, &port) in SPECS.iter().zip(&ports) {
        let n = if spec.name == "fnv" { 2000 } else { 300 };
        let keys = keys(spec.name, n);
        write_through(SocketAddr::from(([127, 0, 0, 1], port)), &keys);
        let config = slotgate_config(&servers, spec);
        config.validate().unwrap();
        let table = table_from_config(&config).unwrap();

        // Every key sits on the server slotgate's placement names (and only there).
        let mut per_server = [0usize; 3];
        for key in &keys {
            let on = placed_on(&table, &servers, key);
            per_server[on] += 1;
            let found: Option<Vec<u8>> = direct[on].get(key).await.unwrap();
            assert_eq!(
                found.as_deref(),
                Some(&value_of(key)[..]),
                "{}: key {:?} is not on server {on} where slotgate would look",
                spec.name,
                String::from_utf8_lossy(key)
            );
        }
        // Twemproxy's crc32 is 15 bits wide, so on a 32-bit ketama circle every key lands
        // on the first point's server: faithfully the same here. The others spread.
        if spec.hash != KeyHash::Crc32 {
            assert!(
                per_server.iter().all(|&c| c > 0),
                "{}: {per_server:?}",
                spec.name
            );
        }

        // And slotgate itself, in front of the same servers, reads every one back.
        let proxy = Proxy::start(config).expect("start slotgate with ketama placement");
        let mut c = client(proxy.local_addr()).await;
        for chunk in keys.chunks(50) {
            let got: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(chunk)
                .query_async(&mut c)
                .await
                .unwrap();
            for (key, value) in chunk.iter().zip(got) {
                assert_eq!(
                    value,
                    Some(value_of(key)),
                    "{}: MGET {:?}",
                    spec.name,
                    String::from_utf8_lossy(key)
                );
            }
        }
        if spec.name == "fnv" {
            for key in &keys {
                let v: Option<Vec<u8>> = c.get(key).await.unwrap();
                assert_eq!(v, Some(value_of(key)));
            }
        }
        drop(c);
        proxy.shutdown();
    }
}
