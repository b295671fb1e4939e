//! The Kubernetes manifests under `deploy/kubernetes/` against the code: every variable they
//! give slotgate is one it reads (flag variables from `slotgate --help`, the others typed by
//! the config schema through `slotgate check-config`), the ConfigMap's `slotgate.toml` passes
//! `check-config`, every container port, probe and Service port matches the listen / admin
//! settings the same manifests produce, the fleet view's `proxy.announce` and
//! `fleet.peers_dns` agree with those ports and name a headless Service of the manifests that
//! selects the pods, the grace period covers the preStop pause plus the drain, and every probe
//! and scrape path is served: the real binary runs with the container's own arguments and
//! environment (`$(POD_IP)` references expanded, the Downward API given example values) in
//! front of a real cluster, and each path is asked of its admin listener. No Kubernetes
//! cluster is needed.
//!
//! The manifests are read as kustomize builds them (`resources` plus `configMapGenerator`),
//! and, where `kubectl` is installed, also as `kubectl kustomize` renders them (hashed
//! ConfigMap names included); where `kubernetes-validate` is in the test venv
//! (`scripts/ensure-python`), the rendered objects are checked against Kubernetes' schemas.

use crate::common;
use crate::common::binary::{check_config_passes, spawn_slotgate, KillOnDrop};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_norway::Value;
use slotgate::config::{Config, EnvOverrides};
use slotgate::local_redis::{ClusterOptions, LocalCluster};

/// The shapes under `deploy/kubernetes/`, each a kustomization directory.
const SHAPES: [&str; 2] = ["sidecar", "fleet"];

/// The oldest Kubernetes the manifests are for: native sidecars (init containers with
/// `restartPolicy: Always`) are on by default from 1.29.
const KUBERNETES_VERSION: &str = "1.29.0";

/// The flags whose values the checks below need, with the config key each overrides; their
/// environment variables are read from `slotgate --help`, not repeated here.
const LISTEN_FLAG: &str = "--listen";
const ADMIN_FLAG: &str = "--admin-listen";
const DRAIN_FLAG: &str = "--drain-timeout-ms";
const CONFIG_FLAG: &str = "--config";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubernetes_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

#[test]
fn every_kustomization_is_a_checked_shape() {
    let mut found: Vec<String> = std::fs::read_dir(kubernetes_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("kustomization.yaml").is_file())
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut shapes = SHAPES.map(String::from).to_vec();
    shapes.sort();
    assert_eq!(found, shapes, "add a new shape to SHAPES so it is checked");
}

#[test]
fn sidecar_manifests_match_the_code() {
    check_shape("sidecar");
}

#[test]
fn fleet_manifests_match_the_code() {
    check_shape("fleet");
}

/// Every check of one shape: statically on both readings of the manifests, then the binary.
fn check_shape(shape: &str) {
    let dir = kubernetes_dir().join(shape);
    let help = Help::read();
    let built = build(&dir);
    // Secrets come from the `*.example.yaml` files, which kustomize does not apply.
    let examples = example_objects(&dir);
    let plans = check_objects(&built, &examples, &help);
    assert!(!plans.is_empty(), "{shape}: no slotgate container found");
    if let Some(rendered) = kubectl_kustomize(&dir) {
        let again = check_objects(
            &parse_documents(&rendered, "kubectl kustomize"),
            &examples,
            &help,
        );
        assert_eq!(
            again.len(),
            plans.len(),
            "{shape}: kubectl kustomize renders other containers"
        );
        schema_check(shape, &rendered);
    } else {
        eprintln!("deploy_manifests: kubectl not found, `kubectl kustomize` rendering not checked");
    }
    for plan in &plans {
        run_plan(plan);
    }
}

/// The objects kustomize builds from `dir`: its `resources` files and one ConfigMap per
/// `configMapGenerator` entry (unhashed name). Every YAML file of `dir` must be one of its
/// resources or an `*.example.yaml`, so none is silently left out.
fn build(dir: &Path) -> Vec<Value> {
    let kustomization = read_yaml(&dir.join("kustomization.yaml"));
    let resources: Vec<String> = seq(&kustomization, &["resources"])
        .iter()
        .map(|r| r.as_str().expect("resource file name").to_string())
        .collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml")
            && name != "kustomization.yaml"
            && !name.ends_with(".example.yaml")
        {
            assert!(
                resources.contains(&name),
                "{dir:?}: {name} is not in resources"
            );
        }
    }
    let mut objects = Vec::new();
    for file in &resources {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        objects.extend(parse_documents(&text, file));
    }
    for generator in seq(&kustomization, &["configMapGenerator"]) {
        let name = text(generator, &["name"]).expect("generator name");
        let mut data = serde_norway::Mapping::new();
        for file in seq(generator, &["files"]) {
            let spec = file.as_str().expect("generator file");
            // `key=path` or `path` (the key is then its file name).
            let (key, path) = spec
                .split_once('=')
                .unwrap_or_else(|| (Path::new(spec).file_name().unwrap().to_str().unwrap(), spec));
            let content = std::fs::read_to_string(dir.join(path)).unwrap();
            data.insert(key.into(), content.into());
        }
        let mut object = serde_norway::Mapping::new();
        object.insert("kind".into(), "ConfigMap".into());
        let mut metadata = serde_norway::Mapping::new();
        metadata.insert("name".into(), name.into());
        object.insert("metadata".into(), Value::Mapping(metadata));
        object.insert("data".into(), Value::Mapping(data));
        objects.push(Value::Mapping(object));
    }
    objects
}

fn example_objects(dir: &Path) -> Vec<Value> {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".example.yaml") {
            objects.extend(parse_documents(
                &std::fs::read_to_string(&path).unwrap(),
                "example",
            ));
        }
    }
    objects
}

/// `kubectl kustomize dir`, when kubectl is installed (it renders offline).
fn kubectl_kustomize(dir: &Path) -> Option<String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl kustomize {dir:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The rendered objects against Kubernetes' own schemas (unknown fields rejected), when
/// `kubernetes-validate` is in the test venv; it carries the schemas, so no network.
fn schema_check(shape: &str, rendered: &str) {
    let validator = root().join("target/redis-py/venv/bin/kubernetes-validate");
    if !validator.is_file() {
        eprintln!(
            "deploy_manifests: {validator:?} missing (scripts/ensure-python), schemas not checked"
        );
        return;
    }
    let file =
        std::env::temp_dir().join(format!("slotgate-k8s-{shape}-{}.yaml", std::process::id()));
    std::fs::write(&file, rendered).unwrap();
    let examples = kubernetes_dir().join(shape).join("secret.example.yaml");
    let out = Command::new(&validator)
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .args(examples.is_file().then_some(&examples))
        .output()
        .unwrap();
    std::fs::remove_file(&file).ok();
    assert!(
        out.status.success(),
        "{shape}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `slotgate --help` says about the flags: each flag's environment variable.
struct Help {
    /// `(flag, variable)`, e.g. `("--listen", "SLOTGATE_LISTEN")`.
    flags: Vec<(String, String)>,
}

impl Help {
    fn read() -> Help {
        let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut flags = Vec::new();
        let mut flag = None;
        for line in text.lines() {
            if let Some(name) = line.split_whitespace().find(|w| w.starts_with("--")) {
                flag = Some(name.to_string());
            }
            if let (Some(flag), Some(at)) = (&flag, line.find("[env: ")) {
                let rest = &line[at + "[env: ".len()..];
                let variable = rest.split('=').next().unwrap().to_string();
                flags.push((flag.clone(), variable));
            }
        }
        assert!(flags.len() >= 5, "no flag variables in --help:\n{text}");
        Help { flags }
    }

    fn variables(&self) -> Vec<String> {
        self.flags.iter().map(|(_, v)| v.clone()).collect()
    }

    fn variable_of(&self, flag: &str) -> &str {
        let found = self.flags.iter().find(|(f, _)| f == flag);
        &found
            .unwrap_or_else(|| panic!("slotgate --help has no {flag} with a variable"))
            .1
    }
}

/// One slotgate container, as the test runs it.
struct Plan {
    /// Where it comes from, for messages.
    what: String,
    /// Its arguments, `--config` pointing at `config_file`.
    args: Vec<String>,
    /// The image's environment overlaid with the container's, secrets resolved.
    env: Vec<(String, String)>,
    /// The config file it mounts (or an empty one), written for this run.
    config_file: PathBuf,
    /// Every path the probes and the Prometheus annotations ask of the admin listener.
    paths: Vec<String>,
    /// `proxy.drain_timeout_ms` as the container gets it.
    drain_timeout_ms: u64,
}

/// Every static check on one reading of the manifests; a run plan per slotgate container.
fn check_objects(objects: &[Value], examples: &[Value], help: &Help) -> Vec<Plan> {
    let lookup: Vec<&Value> = objects.iter().chain(examples).collect();
    let mut plans = Vec::new();
    let mut slotgate_pods = Vec::new();
    for object in objects {
        let kind = text(object, &["kind"]).unwrap_or_default();
        let pod = match kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" => &object["spec"]["template"],
            "Pod" => object,
            _ => continue,
        };
        let workload = format!("{kind}/{}", text(object, &["metadata", "name"]).unwrap());
        let containers = seq(pod, &["spec", "containers"])
            .iter()
            .chain(seq(pod, &["spec", "initContainers"]));
        for container in containers {
            let image = text(container, &["image"]).unwrap_or_default();
            if !image.contains("slotgate") {
                continue;
            }
            let what = format!(
                "{workload} container {}",
                text(container, &["name"]).unwrap()
            );
            plans.push(check_container(&what, pod, container, &lookup, help));
            slotgate_pods.push((labels(pod), container.clone()));
        }
    }
    for object in objects {
        let kind = text(object, &["kind"]).unwrap_or_default();
        let name = text(object, &["metadata", "name"]).unwrap_or_default();
        match kind.as_str() {
            "Service" => {
                let selector = string_map(&object["spec"]["selector"]);
                let (_, container) = slotgate_pods
                    .iter()
                    .find(|(labels, _)| selects(&selector, labels))
                    .unwrap_or_else(|| panic!("Service/{name} selects no slotgate pod"));
                for port in seq(object, &["spec", "ports"]) {
                    let target = port.get("targetPort").unwrap_or(&port["port"]);
                    assert!(
                        resolve_port(container, target).is_some(),
                        "Service/{name}: targetPort {target:?} is no port of the slotgate container"
                    );
                }
            }
            "PodDisruptionBudget" => {
                let selector = string_map(&object["spec"]["selector"]["matchLabels"]);
                assert!(
                    slotgate_pods
                        .iter()
                        .any(|(labels, _)| selects(&selector, labels)),
                    "PodDisruptionBudget/{name} selects no slotgate pod"
                );
            }
            _ => {}
        }
    }
    plans
}

fn check_container(
    what: &str,
    pod: &Value,
    container: &Value,
    lookup: &[&Value],
    help: &Help,
) -> Plan {
    let flag_variables = help.variables();
    // The environment: the image's ENV lines, then the container's (which win), each value's
    // `$(NAME)` replaced by the container's variable NAME defined before it, as Kubernetes
    // does (a variable of the Downward API, `POD_IP`, only feeds such references).
    let mut env: BTreeMap<String, String> = image_env().into_iter().collect();
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    let mut referenced = Vec::new();
    for entry in seq(container, &["env"]) {
        let name = text(entry, &["name"]).unwrap();
        let value = match (entry.get("value"), entry.get("valueFrom")) {
            (Some(v), None) => {
                let raw = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: {name} is not a string"));
                let (value, used) = expand(what, &name, raw, &defined);
                referenced.extend(used);
                value
            }
            (None, Some(from)) => value_from(what, &name, from, lookup),
            _ => panic!("{what}: {name} has neither value nor valueFrom"),
        };
        defined.insert(name.clone(), value.clone());
        env.insert(name, value);
    }
    // Variables that only feed references are not slotgate's: the process does not need them.
    env.retain(|name, _| name.starts_with("SLOTGATE_") || !referenced.contains(name));
    for source in seq(container, &["envFrom"]) {
        let (kind, reference) = match (source.get("secretRef"), source.get("configMapRef")) {
            (Some(r), _) => ("Secret", r),
            (_, Some(r)) => ("ConfigMap", r),
            _ => panic!("{what}: envFrom without secretRef or configMapRef"),
        };
        let name = text(reference, &["name"]).unwrap();
        let object =
            find(lookup, kind, &name).unwrap_or_else(|| panic!("{what}: no {kind}/{name}"));
        env.extend(string_map(data_of(object)));
    }
    for name in env.keys() {
        assert!(
            name.starts_with("SLOTGATE_"),
            "{what}: {name} is read by nothing in slotgate"
        );
        if !name.contains("__") {
            assert!(
                flag_variables.contains(name),
                "{what}: {name} is not a flag variable of slotgate --help ({flag_variables:?})"
            );
        }
    }

    // The config file: `--config PATH` (or SLOTGATE_CONFIG) inside a ConfigMap's mount.
    let args: Vec<String> = seq(container, &["args"])
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(
        seq(container, &["command"]).is_empty(),
        "{what}: keep the image's entrypoint"
    );
    let config_variable = help.variable_of(CONFIG_FLAG);
    let in_pod = flag_value(&args, CONFIG_FLAG).or_else(|| env.get(config_variable).cloned());
    let content = match &in_pod {
        Some(path) => mounted_file(what, pod, container, path, lookup),
        None => String::new(),
    };
    let config_file = std::env::temp_dir().join(format!(
        "slotgate-k8s-{}-{}.toml",
        what.replace(['/', ' '], "-"),
        std::process::id()
    ));
    std::fs::write(&config_file, &content).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if Some(a) == in_pod.as_ref() {
                config_file.to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    if env.contains_key(config_variable) {
        env.insert(
            config_variable.to_string(),
            config_file.to_string_lossy().into_owned(),
        );
    }
    let env: Vec<(String, String)> = env.into_iter().collect();

    // Every SLOTGATE_<SECTION>__<KEY> typed by the schema (an unknown key or a value of the
    // wrong type is an error here), over the mounted file if there is one.
    let overrides = EnvOverrides::from_vars(env.clone(), &flag_variables)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let config = Config::load_with_env(Some(&config_file), &overrides)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // A mounted file must pass `slotgate check-config` with the container's variables, as
    // docs/DEPLOY.md tells users to run it before applying. (Without a file, the flag
    // variables supply what the file would, which check-config does not read: the start in
    // run_plan checks those.)
    if in_pod.is_some() {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        check_config_passes(config_file.to_str().unwrap(), &pairs);
    }

    // What the container listens on: flag > flag variable > SLOTGATE_<SECTION>__<KEY> > file.
    let effective = |flag: &str, configured: String| {
        flag_value(&args, flag)
            .or_else(|| {
                env.iter()
                    .find(|(k, _)| k == help.variable_of(flag))
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or(configured)
    };
    let listen = effective(LISTEN_FLAG, config.proxy.listen.clone());
    let admin = effective(ADMIN_FLAG, config.admin.listen.clone());
    let drain_timeout_ms: u64 = effective(DRAIN_FLAG, config.proxy.drain_timeout_ms.to_string())
        .parse()
        .unwrap();
    assert!(!admin.is_empty(), "{what}: no admin listener, so no probes");
    let admin_port = port_of(&admin);
    let listen_port = port_of(&listen);
    check_fleet(
        what,
        pod,
        container,
        lookup,
        &config,
        listen_port,
        admin_port,
    );

    // Declared ports: the admin one always (probes), the client one unless it is loopback
    // only (a sidecar's), and nothing else.
    let declared: Vec<u16> = seq(container, &["ports"])
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap() as u16)
        .collect();
    assert!(
        declared.contains(&admin_port),
        "{what}: admin listener {admin} is not a containerPort {declared:?}"
    );
    let loopback = listen.starts_with("127.")
        || listen.starts_with("localhost:")
        || listen.starts_with("[::1]:");
    assert!(
        loopback || declared.contains(&listen_port),
        "{what}: listener {listen} is not a containerPort {declared:?}"
    );
    for port in &declared {
        assert!(
            *port == admin_port || (*port == listen_port && !loopback),
            "{what}: containerPort {port} is neither the listener {listen} nor the admin listener {admin}"
        );
    }

    // Probes on the admin port; their paths asked of the binary later.
    let mut paths = Vec::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let Some(get) = container.get(probe).and_then(|p| p.get("httpGet")) else {
            assert!(probe == "startupProbe", "{what}: no {probe} with httpGet");
            continue;
        };
        assert_eq!(
            resolve_port(container, &get["port"]),
            Some(admin_port),
            "{what}: {probe} not on the admin port"
        );
        paths.push(text(get, &["path"]).unwrap());
    }
    let annotations = string_map(&pod["metadata"]["annotations"]);
    if annotations.get("prometheus.io/scrape").map(String::as_str) == Some("true") {
        let port: u16 = annotations["prometheus.io/port"].parse().unwrap();
        assert_eq!(
            port, admin_port,
            "{what}: prometheus.io/port is not the admin port"
        );
        paths.push(
            annotations
                .get("prometheus.io/path")
                .cloned()
                .unwrap_or("/metrics".into()),
        );
    }

    // SIGTERM comes after preStop; the drain must end within the grace period.
    let grace_ms = pod["spec"]
        .get("terminationGracePeriodSeconds")
        .map_or(30, |g| g.as_u64().unwrap())
        * 1000;
    let pre_stop = &container["lifecycle"]["preStop"];
    let pause_ms = if let Some(command) = pre_stop["exec"].get("command") {
        let words: Vec<&str> = command
            .as_sequence()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(words[0], "sleep", "{what}: a preStop other than sleep");
        words[1].parse::<u64>().unwrap() * 1000
    } else {
        pre_stop["sleep"]
            .get("seconds")
            .map_or(0, |s| s.as_u64().unwrap() * 1000)
    };
    assert!(
        grace_ms >= pause_ms + drain_timeout_ms + 1000,
        "{what}: terminationGracePeriodSeconds {} s does not cover the preStop {pause_ms} ms + drain {drain_timeout_ms} ms + 1 s",
        grace_ms / 1000
    );

    Plan {
        what: what.to_string(),
        args,
        env,
        config_file,
        paths,
        drain_timeout_ms,
    }
}

/// The fleet view's settings against the manifests: clients are told the client
/// `containerPort` (`proxy.announce`), and `fleet.peers_dns` names a headless Service that
/// selects this pod, at the admin `containerPort` (its records are pod addresses: no Service
/// port mapping applies).
fn check_fleet(
    what: &str,
    pod: &Value,
    container: &Value,
    lookup: &[&Value],
    config: &Config,
    listen_port: u16,
    admin_port: u16,
) {
    if !config.proxy.announce.is_empty() {
        assert_eq!(
            port_of(&config.proxy.announce),
            listen_port,
            "{what}: proxy.announce {} is not the client listener's port",
            config.proxy.announce
        );
    }
    let dns = &config.fleet.peers_dns;
    if dns.is_empty() {
        return;
    }
    assert_eq!(
        port_of(dns),
        admin_port,
        "{what}: fleet.peers_dns {dns} is not at the admin containerPort (a headless Service's \
         records are pod addresses: its port mapping does not apply)"
    );
    let host = dns.rsplit_once(':').unwrap().0;
    // `NAME`, `NAME.NAMESPACE`, `NAME.NAMESPACE.svc…`: the Service is the first label.
    let service_name = host.split('.').next().unwrap();
    let service = find(lookup, "Service", service_name).unwrap_or_else(|| {
        panic!("{what}: fleet.peers_dns {dns} names no Service of the manifests")
    });
    assert_eq!(
        text(service, &["spec", "clusterIP"]).as_deref(),
        Some("None"),
        "{what}: Service/{service_name} (fleet.peers_dns) is not headless: its name would resolve \
         to one cluster IP, not to each replica"
    );
    assert!(
        selects(&string_map(&service["spec"]["selector"]), &labels(pod)),
        "{what}: Service/{service_name} (fleet.peers_dns) does not select this pod"
    );
    assert!(
        seq(service, &["spec", "ports"]).iter().any(|port| {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            resolve_port(container, target) == Some(admin_port)
        }),
        "{what}: Service/{service_name} (fleet.peers_dns) shows no admin port"
    );
}

/// `raw` with each `$(NAME)` replaced by `defined[NAME]` (Kubernetes' dependent variables);
/// the names it used. A reference to a variable not defined before it is a manifest error
/// (Kubernetes would leave it as text).
fn expand(
    what: &str,
    name: &str,
    raw: &str,
    defined: &BTreeMap<String, String>,
) -> (String, Vec<String>) {
    let (mut out, mut used, mut rest) = (String::new(), Vec::new(), raw);
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(')')
            .unwrap_or_else(|| panic!("{what}: {name}: unclosed $( in {raw:?}"));
        let reference = &rest[at + 2..at + end];
        let value = defined.get(reference).unwrap_or_else(|| {
            panic!("{what}: {name} refers to $({reference}), which is not defined before it")
        });
        out.push_str(value);
        used.push(reference.to_string());
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    (out, used)
}

/// The binary with the container's arguments and environment, its listeners moved to free
/// loopback ports and its seeds to a real cluster (with the Secret's cluster password): every
/// path the manifests ask for answers 200 once the slot table is complete.
fn run_plan(plan: &Plan) {
    let password = plan
        .env
        .iter()
        .find(|(k, _)| k == "SLOTGATE_CLUSTER__PASSWORD")
        .map(|(_, v)| v.clone());
    let cluster = LocalCluster::start(ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        password,
        ..ClusterOptions::default()
    })
    .unwrap();
    let mut args: Vec<&str> = plan.args.iter().map(String::as_str).collect();
    let seeds = cluster.seeds().join(",");
    args.extend([ADMIN_FLAG, "127.0.0.1:0", "--cluster", &seeds]);
    let env: Vec<(&str, &str)> = plan
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (child, _, log) = spawn_slotgate(&args, &env);
    let _child = KillOnDrop(child);
    const MARK: &str = "admin listener on http://";
    let line = log.wait_for(MARK, Duration::from_secs(10));
    let at = line.find(MARK).unwrap() + MARK.len();
    let admin = line[at..].split('/').next().unwrap().parse().unwrap();
    for path in &plan.paths {
        common::eventually_blocking(
            &format!("{}: 200 on {path}", plan.what),
            Duration::from_secs(20),
            || {
                let (status, body) = common::http_get(admin, path);
                // 404 is final: the path is not served. Anything else may be the table loading.
                assert_ne!(status, 404, "{}: {path} is not served: {body}", plan.what);
                common::check((status, body), |(status, _)| *status == 200)
            },
        );
    }
    let (status, body) = common::http_get(admin, "/config");
    assert_eq!(status, 200, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        config["proxy"]["drain_timeout_ms"].as_u64(),
        Some(plan.drain_timeout_ms),
        "{}: the test's reading of the layers differs from the binary's",
        plan.what
    );
    std::fs::remove_file(&plan.config_file).ok();
}

/// A `valueFrom`: a key of a Secret (`stringData`) or ConfigMap among `lookup`, or a field of
/// the pod (the Downward API), as an example pod would have it.
fn value_from(what: &str, name: &str, from: &Value, lookup: &[&Value]) -> String {
    if let Some(field) = from.get("fieldRef") {
        let path = text(field, &["fieldPath"]).unwrap();
        return match path.as_str() {
            "status.podIP" => "10.1.0.7",
            "metadata.name" => "slotgate-7d9f8-abcde",
            "metadata.namespace" => "default",
            other => panic!("{what}: {name}: fieldRef {other} is not one this test knows"),
        }
        .to_string();
    }
    let (kind, reference) = match (from.get("secretKeyRef"), from.get("configMapKeyRef")) {
        (Some(r), _) => ("Secret", r),
        (_, Some(r)) => ("ConfigMap", r),
        _ => panic!("{what}: {name} comes from neither a Secret, a ConfigMap nor the pod"),
    };
    let object_name = text(reference, &["name"]).unwrap();
    let key = text(reference, &["key"]).unwrap();
    let object = find(lookup, kind, &object_name)
        .unwrap_or_else(|| panic!("{what}: {name}: no {kind}/{object_name}"));
    string_map(data_of(object))
        .remove(&key)
        .unwrap_or_else(|| panic!("{what}: {name}: {kind}/{object_name} has no key {key}"))
}

/// The file at `path` in the container: a ConfigMap key under one of its mounts.
fn mounted_file(
    what: &str,
    pod: &Value,
    container: &Value,
    path: &str,
    lookup: &[&Value],
) -> String {
    for mount in seq(container, &["volumeMounts"]) {
        let dir = text(mount, &["mountPath"]).unwrap();
        let Some(rest) = path.strip_prefix(&format!("{}/", dir.trim_end_matches('/'))) else {
            continue;
        };
        let volume_name = text(mount, &["name"]).unwrap();
        let volume = seq(pod, &["spec", "volumes"])
            .iter()
            .find(|v| text(v, &["name"]).as_deref() == Some(&volume_name))
            .unwrap_or_else(|| panic!("{what}: no volume {volume_name}"));
        let map_name = text(volume, &["configMap", "name"])
            .unwrap_or_else(|| panic!("{what}: volume {volume_name} is not a ConfigMap"));
        // `items` maps keys to file names; without it each key is a file.
        let key = seq(volume, &["configMap", "items"])
            .iter()
            .find(|item| text(item, &["path"]).as_deref() == Some(rest))
            .map_or(rest.to_string(), |item| text(item, &["key"]).unwrap());
        let map = find(lookup, "ConfigMap", &map_name)
            .unwrap_or_else(|| panic!("{what}: no ConfigMap/{map_name}"));
        return string_map(data_of(map))
            .remove(&key)
            .unwrap_or_else(|| panic!("{what}: ConfigMap/{map_name} has no key {key} for {path}"));
    }
    panic!("{what}: {path} is in no volume mount");
}

/// The `ENV` lines of the Dockerfile: the image's environment under the container's.
fn image_env() -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(|l| {
            let (k, v) = l.trim().split_once('=').expect("ENV KEY=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// The value after `flag` in `args` (`--flag value` or `--flag=value`).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(String::from)
        }
    })
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// A port given by name or number, as the container's port number.
fn resolve_port(container: &Value, port: &Value) -> Option<u16> {
    let ports = seq(container, &["ports"]);
    match port {
        Value::Number(n) => {
            let n = n.as_u64()? as u16;
            ports
                .iter()
                .any(|p| p["containerPort"].as_u64() == Some(n.into()))
                .then_some(n)
        }
        Value::String(name) => ports
            .iter()
            .find(|p| text(p, &["name"]).as_deref() == Some(name))
            .map(|p| p["containerPort"].as_u64().unwrap() as u16),
        _ => None,
    }
}

fn labels(pod: &Value) -> BTreeMap<String, String> {
    string_map(&pod["metadata"]["labels"])
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn find<'a>(objects: &[&'a Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().copied().find(|o| {
        text(o, &["kind"]).as_deref() == Some(kind)
            && text(o, &["metadata", "name"]).as_deref() == Some(name)
    })
}

/// A Secret's `stringData` (the examples' form) or a ConfigMap's `data`.
fn data_of(object: &Value) -> &Value {
    object.get("stringData").unwrap_or(&object["data"])
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().expect("a string value").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))?
        .as_str()
        .map(String::from)
}

fn seq<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn read_yaml(path: &Path) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The documents of a multi-document YAML text (empty ones left out).
fn parse_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}
