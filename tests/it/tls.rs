//! TLS on both sides, with certificates made at test time (rcgen): TLS clients through the
//! TLS listener (raw tokio-rustls speaking RESP, and `redis-cli --tls`), mutual TLS (a client
//! certificate from the CA works; none, or one from another CA, is refused), certificate
//! reload, and slotgate in front of a TLS-only `redis-server` (`--port 0 --tls-port P`),
//! with and without `tls-auth-clients`. Also `proxy.max_clients`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use redis::AsyncCommands;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use slotgate::config::Config;
use slotgate::resp::{Limits, ReplyDecoder};
use slotgate::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------------------------
// Certificates

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("slotgate-tls-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and key written as PEM files.
#[derive(Clone)]
struct Identity {
    cert: PathBuf,
    key: PathBuf,
}

impl Identity {
    fn cert(&self) -> String {
        self.cert.display().to_string()
    }
    fn key(&self) -> String {
        self.key.display().to_string()
    }
}

/// A test CA that signs server and client certificates into `dir`.
struct Ca {
    name: String,
    cert: rcgen::Certificate,
    key: KeyPair,
    file: PathBuf,
}

impl Ca {
    fn new(dir: &Scratch, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let file = dir.path(&format!("{name}-ca.pem"));
        std::fs::write(&file, cert.pem()).expect("write CA");
        Ca {
            name: name.into(),
            cert,
            key,
            file,
        }
    }

    fn ca_file(&self) -> String {
        self.file.display().to_string()
    }

    /// A certificate for 127.0.0.1 and localhost, usable as server and as client (Redis uses
    /// one certificate both ways on its cluster bus).
    fn server(&self, dir: &Scratch, name: &str) -> Identity {
        self.issue(
            dir,
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate.
    fn client(&self, dir: &Scratch, name: &str) -> Identity {
        self.issue(
            dir,
            name,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn issue(
        &self,
        dir: &Scratch,
        name: &str,
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Identity {
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        write_identity(dir, &format!("{}-{name}", self.name), &cert, &key)
    }
}

fn write_identity(dir: &Scratch, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Identity {
    let identity = Identity {
        cert: dir.path(&format!("{name}.crt")),
        key: dir.path(&format!("{name}.key")),
    };
    std::fs::write(&identity.cert, cert.pem()).expect("write cert");
    std::fs::write(&identity.key, key.serialize_pem()).expect("write key");
    identity
}

/// A self-signed client certificate (no CA vouches for it).
fn self_signed_client(dir: &Scratch, name: &str) -> Identity {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    write_identity(dir, name, &cert, &key)
}

// ---------------------------------------------------------------------------------------------
// A raw TLS client speaking RESP

fn client_config(ca: &Path, identity: Option<&Identity>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        Some(id) => {
            let certs = CertificateDer::pem_file_iter(&id.cert)
                .expect("read cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(&id.key).expect("read key");
            builder.with_client_auth_cert(certs, key).expect("identity")
        }
        None => builder.with_no_client_auth(),
    }
}

/// Connect to `addr` with TLS, trusting `ca`, presenting `identity` if given.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Identity>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(Arc::new(client_config(ca, identity)));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// Send one command and read its reply (raw RESP, as text). An error if the connection
/// fails or closes first.
async fn call<S>(stream: &mut S, args: &[&str]) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if let Some(reply) = decoder
                .decode(&mut buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?
            {
                return Ok(String::from_utf8_lossy(reply.raw()).into_owned());
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::other("closed before replying"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::other("no reply within 5 s"))?
}

/// TLS connect and PING: `Ok(reply)` or why not.
async fn tls_ping(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Identity>,
) -> std::io::Result<String> {
    let mut stream = tls_connect(addr, ca, identity).await?;
    call(&mut stream, &["PING"]).await
}

// ---------------------------------------------------------------------------------------------
// A TLS-only redis-server

/// `redis-server --port 0 --tls-port P`: no plaintext port at all. Killed (by PID) on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: Scratch,
}

impl TlsRedis {
    /// Start it with `server` as its certificate, `ca` for client certificates, and
    /// `tls-auth-clients` set to `auth_clients` (`yes`, `no`, `optional`). Waits until it
    /// answers PING over TLS (with `probe` as the client identity).
    async fn start(
        ca: &Ca,
        server: &Identity,
        auth_clients: &str,
        probe: Option<&Identity>,
    ) -> TlsRedis {
        TlsRedis::start_with(ca, server, auth_clients, probe, false, &[]).await
    }

    /// [`TlsRedis::start`] with `extra` arguments; `cluster` picks a port whose bus port
    /// (+10000) is free too.
    async fn start_with(
        ca: &Ca,
        server: &Identity,
        auth_clients: &str,
        probe: Option<&Identity>,
        cluster: bool,
        extra: &[&str],
    ) -> TlsRedis {
        let dir = Scratch::new("redis");
        let port = slotgate::local_redis::free_port(cluster).expect("free port");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.0.display().to_string()])
            .args(["--tls-cert-file", &server.cert()])
            .args(["--tls-key-file", &server.key()])
            .args(["--tls-ca-cert-file", &ca.ca_file()])
            .args(["--tls-auth-clients", auth_clients])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server with TLS");
        let mut redis = TlsRedis {
            child,
            port,
            _dir: dir,
        };
        let what = "the TLS redis-server answering PING";
        common::eventually(what, Duration::from_secs(10), async || {
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited: {status}");
            }
            match tls_ping(redis.addr(), &ca.file, probe).await {
                Ok(reply) if reply == "+PONG\r\n" => Ok(()),
                other => Err(other),
            }
        })
        .await;
        redis
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pool-mode config with one pool on `node` (the test config, but 1 s to connect).
fn pool_on(node: SocketAddr) -> Config {
    let mut config = common::base_config();
    config.backend.connect_timeout_ms = 1_000;
    config.pools.insert(
        "p0".into(),
        slotgate::config::PoolConfig {
            master: node.to_string(),
            ..Default::default()
        },
    );
    config
}

/// A proxy config whose backend is a plain standalone server, with a TLS listener.
fn with_tls_listener(config: &mut Config, server: &Identity) {
    config.tls.listen = "127.0.0.1:0".into();
    config.tls.cert_file = server.cert();
    config.tls.key_file = server.key();
}

// ---------------------------------------------------------------------------------------------
// The client side

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_and_plaintext_clients_are_served_side_by_side() {
    let dir = Scratch::new("listener");
    let ca = Ca::new(&dir, "front");
    let server = ca.server(&dir, "proxy");
    let setup = common::start_pools(1, &[], |c| with_tls_listener(c, &server));
    let tls_addr = setup.proxy.tls_addr().expect("TLS listener");
    assert_ne!(tls_addr, setup.addr());

    let mut tls = tls_connect(tls_addr, &ca.file, None)
        .await
        .expect("TLS handshake");
    assert_eq!(
        call(&mut tls, &["SET", "tls:k", "over-tls"]).await.unwrap(),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut tls, &["GET", "tls:k"]).await.unwrap(),
        "$8\r\nover-tls\r\n"
    );
    // A pipeline larger than one TLS record, in one write.
    let value = "x".repeat(100_000);
    assert_eq!(
        call(&mut tls, &["SET", "tls:big", &value]).await.unwrap(),
        "+OK\r\n"
    );
    let got = call(&mut tls, &["GET", "tls:big"]).await.unwrap();
    assert_eq!(got, format!("$100000\r\n{value}\r\n"));

    // The plaintext listener still serves, and sees what the TLS client wrote.
    let mut plain = setup.client().await;
    let v: String = plain.get("tls:k").await.unwrap();
    assert_eq!(v, "over-tls");

    // A plaintext client on the TLS port gets nothing useful, and the proxy carries on.
    let mut raw = common::Raw::connect(tls_addr);
    raw.send(b"*1\r\n$4\r\nPING\r\n");
    assert!(!raw.read_line().starts_with("+PONG"));

    // A real TLS client: redis-cli --tls.
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &ca.ca_file()])
        .args(["-h", "127.0.0.1", "-p", &tls_addr.port().to_string()])
        .args(["GET", "tls:k"])
        .output()
        .expect("run redis-cli --tls");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-tls");

    // A client that does not trust the proxy's CA fails its own handshake.
    let other = Ca::new(&dir, "other");
    assert!(tls_ping(tls_addr, &other.file, None).await.is_err());
    assert_eq!(
        call(&mut tls, &["PING"]).await.unwrap(),
        "+PONG\r\n",
        "established clients are unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = Scratch::new("mtls");
    let ca = Ca::new(&dir, "front");
    let server = ca.server(&dir, "proxy");
    let good = ca.client(&dir, "app");
    let other_ca = Ca::new(&dir, "rogue");
    let wrong_ca = other_ca.client(&dir, "intruder");
    let self_signed = self_signed_client(&dir, "selfie");
    let setup = common::start_pools(1, &[], |c| {
        with_tls_listener(c, &server);
        c.tls.client_ca_file = ca.ca_file();
        // TLS only: no plaintext listener.
        c.proxy.listen = String::new();
    });
    let tls_addr = setup.proxy.tls_addr().expect("TLS listener");
    assert_eq!(
        setup.addr(),
        tls_addr,
        "local_addr is the TLS one without plaintext"
    );
    assert!(
        setup.proxy.config().exposure_warnings().is_empty(),
        "mutual TLS on loopback warns about nothing"
    );

    assert_eq!(
        tls_ping(tls_addr, &ca.file, Some(&good)).await.unwrap(),
        "+PONG\r\n"
    );
    let mut c = tls_connect(tls_addr, &ca.file, Some(&good)).await.unwrap();
    assert_eq!(call(&mut c, &["SET", "m", "1"]).await.unwrap(), "+OK\r\n");
    assert_eq!(call(&mut c, &["INCR", "m"]).await.unwrap(), ":2\r\n");

    // TLS 1.3: the client's side of the handshake may finish before the server has checked
    // its certificate; the refusal then arrives as an alert instead of the first reply.
    for (what, identity) in [
        ("no certificate", None),
        ("a certificate from another CA", Some(&wrong_ca)),
        ("a self-signed certificate", Some(&self_signed)),
    ] {
        let result = tls_ping(tls_addr, &ca.file, identity).await;
        assert!(result.is_err(), "{what}: {result:?}");
    }
    assert_eq!(call(&mut c, &["GET", "m"]).await.unwrap(), "$1\r\n2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_listener_certificate_files() {
    let dir = Scratch::new("reload");
    let first = Ca::new(&dir, "first");
    let second = Ca::new(&dir, "second");
    let live = Identity {
        cert: dir.path("live.crt"),
        key: dir.path("live.key"),
    };
    let install = |from: &Identity| {
        std::fs::copy(&from.cert, &live.cert).unwrap();
        std::fs::copy(&from.key, &live.key).unwrap();
    };
    install(&first.server(&dir, "proxy"));
    let setup = common::start_pools(1, &[], |c| with_tls_listener(c, &live));
    let tls_addr = setup.proxy.tls_addr().unwrap();
    let mut before = tls_connect(tls_addr, &first.file, None).await.unwrap();
    assert!(tls_ping(tls_addr, &second.file, None).await.is_err());

    // The same paths, new contents: a reload re-reads them for new connections.
    install(&second.server(&dir, "proxy"));
    let reloaded = setup.proxy.reload(setup.proxy.config()).expect("reload");
    assert!(reloaded.not_reloaded.is_empty(), "{reloaded:?}");
    assert_eq!(
        tls_ping(tls_addr, &second.file, None).await.unwrap(),
        "+PONG\r\n"
    );
    assert!(tls_ping(tls_addr, &first.file, None).await.is_err());
    assert_eq!(
        call(&mut before, &["PING"]).await.unwrap(),
        "+PONG\r\n",
        "established sessions keep theirs"
    );

    // A broken file is rejected and the running certificates stay.
    std::fs::write(&live.key, "not a key").unwrap();
    let error = setup.proxy.reload(setup.proxy.config()).unwrap_err();
    assert!(error.to_string().contains("tls.key_file"), "{error}");
    assert_eq!(
        tls_ping(tls_addr, &second.file, None).await.unwrap(),
        "+PONG\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The backend side

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slotgate_serves_a_tls_only_redis_server() {
    let dir = Scratch::new("backend");
    let ca = Ca::new(&dir, "backend");
    let node_cert = ca.server(&dir, "redis");
    let redis = TlsRedis::start(&ca, &node_cert, "no", None).await;
    let mut config = pool_on(redis.addr());
    config.backend.tls.enabled = true;
    config.backend.tls.ca_file = ca.ca_file();
    let proxy = Proxy::start(config).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;

    // Pipelined connections.
    for i in 0..50 {
        let _: () = c
            .set(format!("k{i}"), i)
            .await
            .expect("SET over backend TLS");
    }
    let values: Vec<i64> = redis::cmd("MGET")
        .arg((0..50).map(|i| format!("k{i}")).collect::<Vec<_>>())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(values, (0..50).collect::<Vec<i64>>());
    // The data really is on the TLS node.
    let mut direct = tls_connect(redis.addr(), &ca.file, None).await.unwrap();
    assert_eq!(
        call(&mut direct, &["GET", "k7"]).await.unwrap(),
        "$1\r\n7\r\n"
    );

    // Dedicated connections: a blocking pop and a transaction.
    let mut b = common::client(proxy.local_addr()).await;
    let pop = tokio::spawn(async move {
        let got: Option<(String, String)> = b.blpop("queue", 5.0).await.unwrap();
        got
    });
    common::eventually(
        "BLPOP blocked on the TLS node",
        Duration::from_secs(5),
        async || {
            let info = call(&mut direct, &["INFO", "clients"]).await.unwrap();
            common::check(info, |i| i.contains("blocked_clients:1\r\n"))
        },
    )
    .await;
    let _: () = c.rpush("queue", "job").await.unwrap();
    assert_eq!(
        pop.await.unwrap(),
        Some(("queue".to_string(), "job".to_string()))
    );
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("tx", 1)
        .incr("tx", 1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((a, b), (1, 2));
}

/// The node's certificate is rotated to one from a new CA: new backend connections fail
/// verification until `backend.tls.ca_file` holds the new CA and the config is reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_backend_ca_file() {
    let dir = Scratch::new("backend-reload");
    let old = Ca::new(&dir, "old");
    let new = Ca::new(&dir, "new");
    let redis = TlsRedis::start(&old, &old.server(&dir, "redis"), "no", None).await;
    let trusted = dir.path("trusted-ca.pem");
    std::fs::copy(&old.file, &trusted).unwrap();
    let mut config = pool_on(redis.addr());
    config.backend.tls.enabled = true;
    config.backend.tls.ca_file = trusted.display().to_string();
    let proxy = Proxy::start(config).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    let _: () = c.set("k", "v").await.expect("SET over backend TLS");

    // Rotate the node's certificate and drop slotgate's connections to it.
    let rotated = new.server(&dir, "redis");
    let mut admin = tls_connect(redis.addr(), &old.file, None).await.unwrap();
    let (cert, key) = (rotated.cert(), rotated.key());
    let set = [
        "CONFIG",
        "SET",
        "tls-cert-file",
        &cert,
        "tls-key-file",
        &key,
    ];
    assert_eq!(call(&mut admin, &set).await.unwrap(), "+OK\r\n");
    let kill = ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"];
    assert!(call(&mut admin, &kill).await.unwrap().starts_with(':'));
    // Reconnecting with the old CA fails verification: a clear error, not a hang.
    let what = "an UnknownIssuer error with the old CA";
    let error = common::eventually(what, Duration::from_secs(5), async || {
        match c.get::<_, Option<String>>("k").await {
            Err(e) if e.to_string().contains("UnknownIssuer") => Ok(e),
            other => Err(other),
        }
    })
    .await;
    assert!(
        error.to_string().contains(&redis.addr().to_string()),
        "{error}"
    );

    // The same path, the new CA: a reload puts it in use for new connections.
    std::fs::copy(&new.file, &trusted).unwrap();
    let reloaded = proxy.reload(proxy.config()).expect("reload");
    assert!(reloaded.not_reloaded.is_empty(), "{reloaded:?}");
    let what = "served after the reload";
    let v = common::eventually(what, Duration::from_secs(5), async || {
        c.get::<_, Option<String>>("k").await
    })
    .await;
    assert_eq!(v.as_deref(), Some("v"));

    // A CA file that cannot be used is rejected with its key path; the running one stays.
    std::fs::write(&trusted, "not a certificate").unwrap();
    let error = proxy.reload(proxy.config()).unwrap_err();
    assert!(error.to_string().contains("backend.tls.ca_file"), "{error}");
    let _: () = c.set("k2", "v2").await.expect("still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_client_certificates_and_name_verification() {
    let dir = Scratch::new("backend-mtls");
    let ca = Ca::new(&dir, "backend");
    let node_cert = ca.server(&dir, "redis");
    let proxy_cert = ca.client(&dir, "slotgate");
    // tls-auth-clients yes: the node wants a certificate from its CA.
    let redis = TlsRedis::start(&ca, &node_cert, "yes", Some(&proxy_cert)).await;
    let base = || {
        let mut config = pool_on(redis.addr());
        config.backend.tls.enabled = true;
        config.backend.tls.ca_file = ca.ca_file();
        config
    };

    // Without a client certificate the node refuses us: a clear error, not a hang.
    let proxy = Proxy::start(base()).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    let error = c.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(error.to_string().contains("CertificateRequired"), "{error}");
    drop(proxy);

    // With one it works.
    let mut config = base();
    config.backend.tls.cert_file = proxy_cert.cert();
    config.backend.tls.key_file = proxy_cert.key();
    let proxy = Proxy::start(config.clone()).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    let _: () = c.set("k", "v").await.unwrap();
    let v: String = c.get("k").await.unwrap();
    assert_eq!(v, "v");
    drop(proxy);

    // The node's certificate names 127.0.0.1 and localhost; verifying it against another
    // name (backend.tls.server_name) fails the handshake with a TLS error.
    config.backend.tls.server_name = "redis.example.com".into();
    let proxy = Proxy::start(config.clone()).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    let error = c.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(error.to_string().contains("not valid for name"), "{error}");
    drop(proxy);
    config.backend.tls.server_name = "localhost".into();
    let proxy = Proxy::start(config).expect("start slotgate");
    let mut c = common::client(proxy.local_addr()).await;
    let v: String = c.get("k").await.unwrap();
    assert_eq!(v, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_is_discovered_and_served_over_tls() {
    let dir = Scratch::new("cluster");
    let ca = Ca::new(&dir, "cluster");
    // One certificate for everything: nodes (server and cluster-bus client) and slotgate.
    let cert = ca.server(&dir, "node");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ];
        nodes.push(TlsRedis::start_with(&ca, &cert, "yes", Some(&cert), true, &args).await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &ca.ca_file()])
        .args(["--cert", &cert.cert(), "--key", &cert.key()])
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let what = "every TLS cluster node ok, knowing 3 nodes";
    common::eventually(what, Duration::from_secs(20), async || {
        for node in &nodes {
            let mut c = tls_connect(node.addr(), &ca.file, Some(&cert))
                .await
                .unwrap();
            let info = call(&mut c, &["CLUSTER", "INFO"]).await.unwrap();
            if !(info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")) {
                return Err(info);
            }
        }
        Ok(())
    })
    .await;

    let mut config = common::proxy_config(vec![addrs[0].clone()]);
    config.backend.tls.enabled = true;
    config.backend.tls.ca_file = ca.ca_file();
    config.backend.tls.cert_file = cert.cert();
    config.backend.tls.key_file = cert.key();
    let proxy = Proxy::start(config).expect("start slotgate on a TLS cluster");
    let table = proxy.topology().table();
    let masters: Vec<String> = table
        .shards()
        .iter()
        .map(|s| s.master.to_string())
        .collect();
    let mut expected = addrs.clone();
    expected.sort();
    let mut found = masters.clone();
    found.sort();
    assert_eq!(found, expected, "discovered masters are the TLS ports");

    let mut c = common::client(proxy.local_addr()).await;
    let keys: Vec<String> = (0..60).map(|i| format!("cluster:{i}")).collect();
    for key in &keys {
        let _: () = c.set(key, key).await.unwrap();
    }
    let values: Vec<String> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(values, keys, "a cross-slot MGET split over three TLS nodes");
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 60);
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_max_clients_are_told_and_closed() {
    let dir = Scratch::new("max-clients");
    let ca = Ca::new(&dir, "front");
    let server = ca.server(&dir, "proxy");
    let setup = common::start_pools(1, &[], |c| {
        c.proxy.max_clients = 2;
        with_tls_listener(c, &server);
    });
    let mut first = common::Raw::connect(setup.addr());
    first.send(b"PING\r\n");
    assert_eq!(first.read_line(), "+PONG\r\n");
    // The limit counts both listeners.
    let mut second = tls_connect(setup.proxy.tls_addr().unwrap(), &ca.file, None)
        .await
        .unwrap();
    assert_eq!(call(&mut second, &["PING"]).await.unwrap(), "+PONG\r\n");

    let mut third = common::Raw::connect(setup.addr());
    assert_eq!(third.read_line(), "-ERR max number of clients reached\r\n");
    assert!(third.is_closed());
    // Over TLS the refusal is sent over TLS.
    let refused = tls_ping(setup.proxy.tls_addr().unwrap(), &ca.file, None).await;
    assert_eq!(refused.unwrap(), "-ERR max number of clients reached\r\n");
    // Both refusals are counted, as Redis' INFO stats counts them.
    let info = call(&mut second, &["INFO", "stats"]).await.unwrap();
    assert!(
        info.contains("rejected_connections:2\r\n"),
        "INFO stats after two refusals: {info}"
    );

    // A client leaving frees its place.
    drop(first);
    common::eventually(
        "the freed place reused",
        Duration::from_secs(5),
        async || {
            let mut next = common::Raw::connect(setup.addr());
            next.send(b"PING\r\n");
            common::check(next.read_line(), |line| line == "+PONG\r\n")
        },
    )
    .await;
    assert_eq!(call(&mut second, &["PING"]).await.unwrap(), "+PONG\r\n");
}

/// Upgrade in place (`--take-over`): a TLS session cannot be handed over, so the old process
/// closes TLS clients at their next request boundary, while a plaintext client moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_in_place_closes_tls_clients_at_a_boundary_and_moves_plain_ones() {
    use common::binary::{exit_within, spawn_slotgate, KillOnDrop};
    let dir = Scratch::new("upgrade");
    let ca = Ca::new(&dir, "front");
    let server = ca.server(&dir, "proxy");
    let redis = common::standalone_servers(1).remove(0);
    let master = redis.addr();
    let socket = dir.path("upgrade.sock").display().to_string();
    let (cert, key) = (server.cert(), server.key());
    let env = [
        ("SLOTGATE_POOLS__A__MASTER", master.as_str()),
        ("SLOTGATE_TLS__LISTEN", "127.0.0.1:0"),
        ("SLOTGATE_TLS__CERT_FILE", cert.as_str()),
        ("SLOTGATE_TLS__KEY_FILE", key.as_str()),
        ("SLOTGATE_PROXY__UPGRADE_SOCKET", socket.as_str()),
    ];
    let (old, addr, log) = spawn_slotgate(&["--workers", "1"], &env);
    let mut old = KillOnDrop(old);
    let line = log.wait_for("TLS listener on ", Duration::from_secs(5));
    let tls_addr: SocketAddr = line[line.find("TLS listener on ").unwrap() + 16..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect::<String>()
        .parse()
        .unwrap();
    let mut tls = tls_connect(tls_addr, &ca.file, None).await.unwrap();
    assert_eq!(call(&mut tls, &["PING"]).await.unwrap(), "+PONG\r\n");
    let mut plain = common::Raw::connect(addr);
    plain.send(b"PING\r\n");
    assert_eq!(plain.read_line(), "+PONG\r\n");

    let (next, _, next_log) = spawn_slotgate(&["--workers", "1", "--take-over"], &env);
    let _next = KillOnDrop(next);
    let status = exit_within(&mut old.0, Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{:#?}", log.join());
    next_log.wait_for("take-over done", Duration::from_secs(5));
    // The TLS client was closed (idle: at once); it reconnects to the successor.
    assert!(call(&mut tls, &["PING"]).await.is_err(), "closed");
    let mut again = tls_connect(tls_addr, &ca.file, None).await.unwrap();
    assert_eq!(call(&mut again, &["PING"]).await.unwrap(), "+PONG\r\n");
    plain.send(b"PING\r\n");
    assert_eq!(plain.read_line(), "+PONG\r\n", "the plaintext client moved");
}
