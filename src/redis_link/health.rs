//! What the gateway last saw of each Redis node, for `/health/providers` and
//! `gateway_redis_node_up` (issue 16: health per node, metrics per use and node).
//!
//! A probe task per link, started by the link's first use, runs every [`PROBE_EVERY`] on
//! connections of its own: it asks for the topology (a Cluster's `CLUSTER SLOTS`, the
//! sentinels' current master) and `PING`s each node, every step bounded by [`PROBE_BOUND`].
//! It never touches the breaker or the connection requests use. A call that fails marks the
//! node it was meant for (the server, the current master, or the master of the key's slot) as
//! down until the next probe says otherwise. A call that succeeds costs nothing here: no round
//! trip, no lock, no allocation.

use super::keys;
use super::target::{RedisTarget, Topology};
use redis::aio::MultiplexedConnection;
use redis::{Client, ConnectionAddr, ConnectionInfo, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the probe looks: often enough that a dead master shows within seconds, rarely
/// enough that it costs Redis nothing (a `PING` per node, one topology query).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// One connect + `PING`, or one topology query, at most this long.
const PROBE_BOUND: Duration = Duration::from_millis(500);

/// One node as last seen.
pub struct Node {
    /// `redis://host:port` / `rediss://host:port`: never credentials.
    pub addr: String,
    /// `server` (one Redis), `master` / `replica` (Cluster, Sentinel), `sentinel`, or `seed`
    /// (a configured Cluster node before the first topology answer).
    pub role: &'static str,
    up: AtomicBool,
    /// The slot ranges a Cluster master serves, inclusive.
    slots: Vec<(u16, u16)>,
}

impl Node {
    fn new(addr: String, role: &'static str, up: bool, slots: Vec<(u16, u16)>) -> Self {
        Self {
            addr,
            role,
            up: AtomicBool::new(up),
            slots,
        }
    }

    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the node down (a call meant for it could not reach it); the next probe decides
    /// again.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Relaxed);
    }

    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| u32::from(b.saturating_sub(*a)) + 1)
            .sum()
    }
}

/// Every node of a link as last seen; replaced whole by each probe round.
pub struct Table {
    pub nodes: Vec<Node>,
    /// When the probe filled it; `None` before the first round (the configured nodes, assumed
    /// up like the breaker before the first call).
    pub checked: Option<Instant>,
    /// The node every call goes to outside Cluster (the server, the current master).
    primary: Option<usize>,
}

impl Table {
    /// The configured nodes, before anything is known.
    pub fn configured(target: &RedisTarget) -> Self {
        let (role, urls) = match &target.topology {
            Topology::Single(u) => ("server", std::slice::from_ref(u)),
            Topology::Cluster(n) => ("seed", n.as_slice()),
            Topology::Sentinel { nodes, .. } => ("sentinel", nodes.as_slice()),
        };
        let nodes = urls
            .iter()
            .map(|u| {
                let addr = parse(u.expose())
                    .and_then(|i| display(&i))
                    .unwrap_or_else(|| u.redacted());
                Node::new(addr, role, true, Vec::new())
            })
            .collect();
        let primary = matches!(target.topology, Topology::Single(_)).then_some(0);
        Self {
            nodes,
            checked: None,
            primary,
        }
    }

    /// The node a call on `key` went to, as far as the last probe knows: the master serving
    /// its slot in a Cluster, else the server or current master.
    pub fn node_for(&self, key: &str) -> Option<&Node> {
        if self.nodes.iter().any(|n| !n.slots.is_empty()) {
            let slot = keys::slot(key);
            return self
                .nodes
                .iter()
                .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)));
        }
        self.primary.and_then(|i| self.nodes.get(i))
    }

    /// The `nodes` list of the health section.
    pub fn to_json(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut v = serde_json::json!({"node": n.addr, "role": n.role, "healthy": n.up()});
                if !n.slots.is_empty() {
                    v["slots"] = n.slot_count().into();
                }
                v
            })
            .collect();
        serde_json::Value::Array(nodes)
    }
}

/// The probe's own clients and connections, by `host:port`.
struct Probe {
    topology: Topology,
    /// Clients for the configured URLs (TLS files read once, when the probe starts).
    configured: Vec<Client>,
    clients: HashMap<String, Client>,
    conns: HashMap<String, MultiplexedConnection>,
    config: redis::AsyncConnectionConfig,
}

/// Starts the probe of `link` once, on the current runtime; it ends when the link is dropped
/// (a reload moved every user elsewhere).
pub fn start(link: &Arc<super::RedisLink>) {
    if link.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        link.probing.store(false, Ordering::Release);
        return;
    };
    let target = link.target().clone();
    let weak: Weak<super::RedisLink> = Arc::downgrade(link);
    rt.spawn(async move {
        // The TLS files are read here, off the request that started the probe.
        let Ok(configured) = target.node_clients() else {
            // The link was built from the same files a moment ago; if they went away since,
            // the table shows what the calls themselves find.
            return;
        };
        let mut probe = Probe {
            topology: target.topology,
            configured,
            clients: HashMap::new(),
            conns: HashMap::new(),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(super::CONNECT_TIMEOUT))
                .set_response_timeout(Some(super::RESPONSE_TIMEOUT)),
        };
        loop {
            let Some(link) = weak.upgrade() else { return };
            let before = link.health.load_full();
            drop(link);
            let table = probe.round(&before).await;
            let Some(link) = weak.upgrade() else { return };
            link.health.store(Arc::new(table));
            drop(link);
            tokio::time::sleep(PROBE_EVERY).await;
        }
    });
}

impl Probe {
    async fn round(&mut self, before: &Table) -> Table {
        let table = self.look(before).await;
        self.prune(&table);
        table
    }

    async fn look(&mut self, before: &Table) -> Table {
        match self.topology.clone() {
            Topology::Single(_) => {
                let node = self.configured_node(0, "server");
                let mut table = Table {
                    nodes: node.into_iter().collect(),
                    checked: None,
                    primary: Some(0),
                };
                self.ping_all(&mut table).await;
                table
            }
            Topology::Cluster(_) => self.cluster_round(before).await,
            Topology::Sentinel { master, .. } => self.sentinel_round(&master, before).await,
        }
    }

    /// `CLUSTER SLOTS` from the first node that answers (known masters first, then the
    /// configured seeds), then a `PING` to every master and replica it lists.
    async fn cluster_round(&mut self, before: &Table) -> Table {
        let mut asked: Vec<(String, Client)> = Vec::new();
        for n in before.nodes.iter().filter(|n| n.role == "master" && n.up()) {
            if let Some(c) = self.client_for(&key_of(&n.addr)) {
                asked.push((key_of(&n.addr), c));
            }
        }
        for c in &self.configured {
            if let Some(k) = display(c.get_connection_info()).map(|d| key_of(&d)) {
                asked.push((k, c.clone()));
            }
        }
        let template = self
            .configured
            .first()
            .map(|c| c.get_connection_info().clone());
        let mut slots = None;
        for (k, client) in asked.into_iter().take(4) {
            let answer = self
                .query::<Value>(&k, &client, redis::cmd("CLUSTER").arg("SLOTS"))
                .await;
            let host = client_host(&client);
            if let (Some(v), Some(host)) = (answer, host) {
                slots = Some(parse_slots(v, &host));
                break;
            }
        }
        let (Some(slots), Some(template)) = (slots, template) else {
            // Nobody answered: the nodes as last seen (or the seeds), pinged again.
            let mut table = Table {
                nodes: before
                    .nodes
                    .iter()
                    .map(|n| Node::new(n.addr.clone(), n.role, false, n.slots.clone()))
                    .collect(),
                checked: None,
                primary: None,
            };
            self.ping_all(&mut table).await;
            return table;
        };
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (start, end, master, replicas) in slots {
            for (i, (host, port)) in std::iter::once(master).chain(replicas).enumerate() {
                let info = at(&template, &host, port);
                let Some(addr) = display(&info) else { continue };
                let k = key_of(&addr);
                if let Ok(c) = Client::open(info) {
                    self.clients.entry(k.clone()).or_insert(c);
                }
                let role = if i == 0 { "master" } else { "replica" };
                match index.get(&k) {
                    Some(&j) => {
                        if let Some(n) = nodes.get_mut(j) {
                            if role == "master" {
                                n.role = "master";
                                n.slots.push((start, end));
                            }
                        }
                    }
                    None => {
                        index.insert(k, nodes.len());
                        let slots = if role == "master" {
                            vec![(start, end)]
                        } else {
                            Vec::new()
                        };
                        nodes.push(Node::new(addr, role, false, slots));
                    }
                }
            }
        }
        // Masters first, then replicas, each in address order: a stable list for operators.
        nodes.sort_by(|a, b| (a.role != "master", &a.addr).cmp(&(b.role != "master", &b.addr)));
        let mut table = Table {
            nodes,
            checked: None,
            primary: None,
        };
        self.ping_all(&mut table).await;
        table
    }

    /// The sentinels' `PING`, the current master from the first that answers, and its `PING`.
    async fn sentinel_round(&mut self, name: &str, before: &Table) -> Table {
        let sentinels: Vec<Node> = (0..self.configured.len())
            .filter_map(|i| self.configured_node(i, "sentinel"))
            .collect();
        let mut table = Table {
            nodes: sentinels,
            checked: None,
            primary: None,
        };
        self.ping_all(&mut table).await;
        let mut master = None;
        for (i, n) in table.nodes.iter().enumerate() {
            if !n.up() {
                continue;
            }
            let Some(client) = self.configured.get(i).cloned() else {
                continue;
            };
            let answer = self
                .query::<Option<(String, String)>>(
                    &key_of(&n.addr),
                    &client,
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(name),
                )
                .await;
            if let Some(Some((host, port))) = answer {
                master = port.parse::<u16>().ok().map(|p| (host, p));
                break;
            }
        }
        let template = self
            .configured
            .first()
            .map(|c| c.get_connection_info().clone());
        let master_node = match (master, template) {
            (Some((host, port)), Some(template)) => {
                let info = at(&template, &host, port);
                display(&info).map(|addr| {
                    if let Ok(c) = Client::open(info) {
                        self.clients.insert(key_of(&addr), c);
                    }
                    Node::new(addr, "master", false, Vec::new())
                })
            }
            // No sentinel answered: the master as last seen, pinged again.
            _ => before
                .nodes
                .iter()
                .find(|n| n.role == "master")
                .map(|n| Node::new(n.addr.clone(), "master", false, Vec::new())),
        };
        if let Some(m) = master_node {
            let mut only = Table {
                nodes: vec![m],
                checked: None,
                primary: Some(0),
            };
            self.ping_all(&mut only).await;
            let mut nodes = only.nodes;
            nodes.append(&mut table.nodes);
            table.nodes = nodes;
            table.primary = Some(0);
        }
        table.checked = Some(Instant::now());
        table
    }

    /// A node for configured URL `i`.
    fn configured_node(&self, i: usize, role: &'static str) -> Option<Node> {
        let addr = display(self.configured.get(i)?.get_connection_info())?;
        Some(Node::new(addr, role, false, Vec::new()))
    }

    /// The client for node `k`: one the topology named, else a configured one.
    fn client_for(&self, k: &str) -> Option<Client> {
        self.clients.get(k).cloned().or_else(|| {
            self.configured
                .iter()
                .find(|c| display(c.get_connection_info()).is_some_and(|d| key_of(&d) == k))
                .cloned()
        })
    }

    /// `PING`s every node of `table` at once and records who answered.
    async fn ping_all(&mut self, table: &mut Table) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in &table.nodes {
            let k = key_of(&n.addr);
            let Some(client) = self.client_for(&k) else {
                continue;
            };
            let conn = self.conns.remove(&k);
            let config = self.config.clone();
            tasks.spawn(async move {
                let alive = ping(conn, &client, &config).await;
                (k, alive)
            });
        }
        let mut up = HashMap::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok((k, alive)) = done {
                up.insert(k.clone(), alive.is_some());
                if let Some(c) = alive {
                    self.conns.insert(k, c);
                }
            }
        }
        for n in &table.nodes {
            n.up.store(
                up.get(&key_of(&n.addr)).copied().unwrap_or(false),
                Ordering::Relaxed,
            );
        }
        table.checked = Some(Instant::now());
    }

    /// Drops the connections and clients of nodes no longer in the topology (so both stay
    /// bounded by the nodes there are).
    fn prune(&mut self, table: &Table) {
        let keep: Vec<String> = table.nodes.iter().map(|n| key_of(&n.addr)).collect();
        self.conns.retain(|k, _| keep.contains(k));
        self.clients.retain(|k, _| keep.contains(k));
    }

    /// One command on node `k`'s probe connection (made if needed), bounded.
    async fn query<T: redis::FromRedisValue>(
        &mut self,
        k: &str,
        client: &Client,
        cmd: &mut redis::Cmd,
    ) -> Option<T> {
        let conn = self.conns.remove(k);
        let config = self.config.clone();
        let cmd = cmd.clone();
        let out = tokio::time::timeout(PROBE_BOUND, async {
            let mut c = match conn {
                Some(c) => c,
                None => client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok()?,
            };
            let v = cmd.query_async::<T>(&mut c).await.ok()?;
            Some((c, v))
        })
        .await
        .ok()
        .flatten()?;
        self.conns.insert(k.to_string(), out.0);
        Some(out.1)
    }
}

/// `PING` over `conn` (or a fresh connection when there is none or it failed), bounded.
async fn ping(
    conn: Option<MultiplexedConnection>,
    client: &Client,
    config: &redis::AsyncConnectionConfig,
) -> Option<MultiplexedConnection> {
    tokio::time::timeout(PROBE_BOUND, async {
        if let Some(mut c) = conn {
            if redis::cmd("PING").query_async::<()>(&mut c).await.is_ok() {
                return Some(c);
            }
        }
        let mut c = client
            .get_multiplexed_async_connection_with_config(config)
            .await
            .ok()?;
        redis::cmd("PING").query_async::<()>(&mut c).await.ok()?;
        Some(c)
    })
    .await
    .ok()
    .flatten()
}

fn parse(url: &str) -> Option<ConnectionInfo> {
    redis::IntoConnectionInfo::into_connection_info(url).ok()
}

/// `scheme://host:port`, never credentials.
fn display(info: &ConnectionInfo) -> Option<String> {
    match info.addr() {
        ConnectionAddr::Tcp(h, p) => Some(format!("redis://{h}:{p}")),
        ConnectionAddr::TcpTls { host, port, .. } => Some(format!("rediss://{host}:{port}")),
        _ => None,
    }
}

fn key_of(addr: &str) -> String {
    addr.split_once("://")
        .map_or(addr, |(_, rest)| rest)
        .to_string()
}

fn client_host(c: &Client) -> Option<String> {
    match c.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, _) => Some(h.clone()),
        ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
        _ => None,
    }
}

/// `template` (credentials, TLS mode and files) at another host and port.
fn at(template: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let addr = match template.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    template.clone().set_addr(addr)
}

type HostPort = (String, u16);

/// One `CLUSTER SLOTS` range: first and last slot, master, replicas.
type SlotRange = (u16, u16, HostPort, Vec<HostPort>);

/// `CLUSTER SLOTS` → its ranges; an empty host is the answering node's.
fn parse_slots(v: Value, answering: &str) -> Vec<SlotRange> {
    let Value::Array(ranges) = v else {
        return Vec::new();
    };
    let node = |v: &Value| -> Option<HostPort> {
        let Value::Array(parts) = v else { return None };
        let host = match parts.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            Value::Nil => String::new(),
            _ => return None,
        };
        let port = match parts.get(1)? {
            Value::Int(p) => u16::try_from(*p).ok()?,
            _ => return None,
        };
        if host == "?" {
            return None;
        }
        let host = if host.is_empty() {
            answering.to_string()
        } else {
            host
        };
        Some((host, port))
    };
    ranges
        .iter()
        .filter_map(|r| {
            let Value::Array(items) = r else { return None };
            let start = match items.first()? {
                Value::Int(i) => u16::try_from(*i).ok()?,
                _ => return None,
            };
            let end = match items.get(1)? {
                Value::Int(i) => u16::try_from(*i).ok()?,
                _ => return None,
            };
            let master = node(items.get(2)?)?;
            let replicas = items.iter().skip(3).filter_map(node).collect();
            Some((start, end, master, replicas))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn n(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn cluster_slots_parse_and_attribute_keys_to_masters() {
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                n("10.0.0.1", 7000),
                n("10.0.0.2", 7001),
            ]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), n("", 7002)]),
        ]);
        let ranges = parse_slots(v, "10.0.0.9");
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            ranges[1].2,
            ("10.0.0.9".to_string(), 7002),
            "an empty host is the answering node"
        );
        let table = Table {
            nodes: vec![
                Node::new(
                    "redis://10.0.0.1:7000".into(),
                    "master",
                    true,
                    vec![(0, 8191)],
                ),
                Node::new(
                    "redis://10.0.0.9:7002".into(),
                    "master",
                    true,
                    vec![(8192, 16383)],
                ),
                Node::new("redis://10.0.0.2:7001".into(), "replica", true, vec![]),
            ],
            checked: None,
            primary: None,
        };
        // "{a}" hashes to slot 15495, "{b}" to 3300.
        assert_eq!(
            table.node_for("x{a}y").unwrap().addr,
            "redis://10.0.0.9:7002"
        );
        assert_eq!(
            table.node_for("x{b}y").unwrap().addr,
            "redis://10.0.0.1:7000"
        );
        assert_eq!(table.nodes[0].slot_count(), 8192);
    }

    #[test]
    fn configured_nodes_carry_no_credentials() {
        let t = RedisTarget::single("rediss://app:hunter2@redis.example:6380/0");
        let table = Table::configured(&t);
        assert_eq!(table.nodes[0].addr, "rediss://redis.example:6380");
        assert_eq!(table.node_for("anything").unwrap().role, "server");
        let json = table.to_json().to_string();
        assert!(!json.contains("hunter2") && !json.contains("app"), "{json}");
    }
}
