#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use bytes::Bytes;
use serde_json::json;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

fn key(n: usize) -> CacheKey {
    cache_key(
        "chat",
        "openai",
        "gpt-4o-mini",
        "tenant",
        &json!({ "n": n }),
    )
}

fn entry(text: &str) -> Entry {
    Entry {
        body: Bytes::from(format!(
            "{{\"object\":\"chat.completion\",\"x\":\"{text}\"}}"
        )),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn memory_hit_shares_the_stored_allocation() {
    let cache = ResponseCache::new(100, HOUR, None);
    let e = entry("a");
    let ptr = e.body.as_ptr();
    cache.put(&key(1), e.clone(), HOUR).await;
    let hit = cache.get(&key(1)).await.expect("hit");
    assert_eq!(hit, e);
    assert_eq!(
        hit.body.as_ptr(),
        ptr,
        "a hit is a refcount bump, not a copy"
    );
    let again = cache.get(&key(1)).await.unwrap();
    assert_eq!(again.body.as_ptr(), ptr);
    assert_eq!(cache.get(&key(2)).await, None);
    assert!(cache.redis_healthy() && !cache.redis_enabled());
}

#[tokio::test]
async fn memory_is_bounded_by_max_size() {
    let cache = ResponseCache::new(50, HOUR, None);
    for i in 0..500 {
        cache.put(&key(i), entry(&i.to_string()), HOUR).await;
    }
    let mut held = 0;
    for i in 0..500 {
        if let Some(e) = cache.get(&key(i)).await {
            assert_eq!(e, entry(&i.to_string()), "entry {i} is its own");
            held += 1;
        }
    }
    assert!(held <= 50, "{held} entries held with max_size 50");
    assert!(held > 0, "something is kept");
}

#[tokio::test]
async fn memory_entries_expire_by_ttl() {
    let cache = ResponseCache::new(10, HOUR, None);
    cache
        .put(&key(1), entry("short"), Duration::from_millis(80))
        .await;
    cache.put(&key(2), entry("long"), HOUR).await;
    assert!(cache.get(&key(1)).await.is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get(&key(1)).await, None, "expired after its ttl");
    assert!(cache.get(&key(2)).await.is_some(), "the other one lives on");
    cache.put(&key(3), entry("zero"), Duration::ZERO).await;
    assert_eq!(cache.get(&key(3)).await, None, "a zero TTL stores nothing");
}

#[tokio::test]
async fn zero_max_size_keeps_nothing_in_memory() {
    let cache = ResponseCache::new(0, HOUR, None);
    cache.put(&key(1), entry("a"), HOUR).await;
    assert_eq!(cache.get(&key(1)).await, None);
}

#[tokio::test]
async fn invalid_redis_url_falls_back_to_memory() {
    let cache = ResponseCache::new(10, HOUR, Some("not a url"));
    assert!(!cache.redis_enabled());
    cache.put(&key(1), entry("a"), HOUR).await;
    assert!(cache.get(&key(1)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_have_one_leader() {
    let cache = Arc::new(ResponseCache::new(10, HOUR, None));
    let k = key(42);
    let upstream_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls, barrier) = (cache.clone(), upstream_calls.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match cache.join(&k) {
                Flight::Leader(guard) => {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    cache.put(&k, entry("answer"), HOUR).await;
                    guard.complete();
                    "leader"
                }
                Flight::Follower(w) => {
                    assert_eq!(w.wait(Duration::from_secs(5)).await, WaitOutcome::Completed);
                    assert_eq!(cache.get(&k).await, Some(entry("answer")));
                    "follower"
                }
            }
        }));
    }
    let mut leaders = 0;
    for t in tasks {
        if t.await.unwrap() == "leader" {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1, "20 concurrent joins → 1 leader");
    assert_eq!(upstream_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(cache.flights.len(), 0, "finished flights are forgotten");
    assert!(
        matches!(cache.join(&k), Flight::Leader(_)),
        "the next request leads again"
    );
}

#[tokio::test]
async fn a_dropped_leader_releases_its_followers() {
    let cache = ResponseCache::new(10, HOUR, None);
    let Flight::Leader(guard) = cache.join(&key(1)) else {
        panic!("first caller leads")
    };
    let Flight::Follower(w1) = cache.join(&key(1)) else {
        panic!("second caller follows")
    };
    let Flight::Leader(other) = cache.join(&key(2)) else {
        panic!("another key has its own leader")
    };
    let waiting = tokio::spawn(w1.wait(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(guard);
    assert_eq!(waiting.await.unwrap(), WaitOutcome::Failed);
    let Flight::Follower(w2) = cache.join(&key(2)) else {
        panic!("follows the live leader")
    };
    assert_eq!(
        w2.wait(Duration::from_millis(30)).await,
        WaitOutcome::TimedOut,
        "a slow leader makes followers go upstream themselves"
    );
    drop(other);
    assert!(matches!(cache.join(&key(1)), Flight::Leader(_)));
}

#[tokio::test]
async fn a_follower_joining_after_completion_sees_it_at_once() {
    let cache = ResponseCache::new(10, HOUR, None);
    let Flight::Leader(guard) = cache.join(&key(1)) else {
        panic!()
    };
    let Flight::Follower(w) = cache.join(&key(1)) else {
        panic!()
    };
    guard.complete();
    assert_eq!(
        w.wait(Duration::from_millis(10)).await,
        WaitOutcome::Completed
    );
}

/// A throwaway `redis-server` on a free port, killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Self { port, child: None };
        s.spawn()?;
        Some(s)
    }

    fn spawn(&mut self) -> Option<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("SKIPPED: redis-server is not installed");
            return None;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_shared_between_instances() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = ResponseCache::new(10, HOUR, Some(&server.url()));
    let b = ResponseCache::new(10, HOUR, Some(&server.url()));
    assert!(a.redis_enabled());
    let e = entry("shared");
    a.put(&key(1), e.clone(), HOUR).await;
    let got = b.get(&key(1)).await.expect("b sees what a stored");
    assert_eq!(got, e);
    assert!(b.redis_healthy());
    // B now holds it in memory: a memory hit shares the allocation.
    let again = b.get(&key(1)).await.unwrap();
    let third = b.get(&key(1)).await.unwrap();
    assert_eq!(again.body.as_ptr(), third.body.as_ptr());
    assert_eq!(b.get(&key(2)).await, None);
    // The Redis value is the compact encoding under the documented key.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(key(1).redis_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw, e.encode());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(key(1).redis_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 3_500_000 && pttl <= 3_600_000,
        "PX ttl set, got {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_enforces_the_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = ResponseCache::new(10, HOUR, Some(&server.url()));
    let b = ResponseCache::new(10, HOUR, Some(&server.url()));
    a.put(&key(1), entry("brief"), Duration::from_millis(300))
        .await;
    assert!(b.get(&key(1)).await.is_some(), "there before the TTL");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let c = ResponseCache::new(10, HOUR, Some(&server.url()));
    assert_eq!(c.get(&key(1)).await, None, "Redis expired it");
    assert_eq!(
        b.get(&key(1)).await,
        None,
        "the memory copy of a Redis hit lives no longer than the Redis entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_miss_and_recovery_is_automatic() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let cache = ResponseCache::new(10, HOUR, Some(&server.url()));
    cache.put(&key(1), entry("before"), HOUR).await;
    assert!(cache.redis_healthy());
    let errors_before = crate::metrics::get()
        .map(|m| m.redis_errors.with_label_values(&["cache"]).get())
        .unwrap_or(0);

    server.kill();
    // Another instance, empty memory, must go to Redis.
    let other = ResponseCache::new(10, HOUR, Some(&server.url()));
    other.put(&key(9), entry("x"), HOUR).await; // connects nowhere
    for i in 0..5 {
        let t = Instant::now();
        assert_eq!(other.get(&key(1)).await, None, "Redis down → a miss");
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "get {i} bounded by the timeout, took {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        cache.put(&key(2), entry("during"), HOUR).await;
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "put {i} does not hang, took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        cache.get(&key(2)).await,
        Some(entry("during")),
        "memory keeps working during the outage"
    );
    assert!(!cache.redis_healthy(), "the outage is visible");
    assert!(!other.redis_healthy());
    if let Some(m) = crate::metrics::get() {
        assert!(
            m.redis_errors.with_label_values(&["cache"]).get() > errors_before,
            "failures are counted"
        );
    }

    server.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        cache.put(&key(3), entry("after"), HOUR).await;
        if other.get(&key(3)).await == Some(entry("after")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not reconnect to the restarted Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cache.redis_healthy() && other.redis_healthy());
}

#[test]
fn raw_keys_map_repeated_bytes_to_their_canonical_key() {
    let cache = ResponseCache::new(10, HOUR, None);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let raw = raw_key("chat", "openai", "m", "gateway", body);
    assert_eq!(cache.canonical_for(&raw), None, "nothing recorded yet");
    let canonical = cache_key(
        "chat",
        "openai",
        "m",
        "gateway",
        &serde_json::from_slice(body).unwrap(),
    );
    cache.remember_canonical(&raw, &canonical);
    assert_eq!(cache.canonical_for(&raw), Some(canonical));
    // Every scope part and every byte counts: another caller or spacing is another raw key.
    for other in [
        raw_key("chat", "openai", "m", "key:team-a", body),
        raw_key("chat", "gemini", "m", "gateway", body),
        raw_key("chat", "openai", "m2", "gateway", body),
        raw_key("embeddings", "openai", "m", "gateway", body),
        raw_key(
            "chat",
            "openai",
            "m",
            "gateway",
            br#"{"model":"m", "messages":[{"role":"user","content":"hi"}]}"#,
        ),
    ] {
        assert_ne!(other, raw);
        assert_eq!(cache.canonical_for(&other), None);
    }
}
