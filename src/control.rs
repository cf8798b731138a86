//! Operations that run beside the request path: provider health checks (one task per pool of
//! the current config generation), SIGHUP reload, SIGUSR1 log reopening, and the SIGTERM drain.

use crate::config::{Config, Overrides};
use crate::logging::{self, targets};
use crate::metrics;
use crate::state::{Runtime, State};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the running config came from, to load it again on SIGHUP.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub overrides: Overrides,
}

pub struct Control {
    pub state: Arc<State>,
    pub source: ConfigSource,
    pub grace: Duration,
}

/// Stops one generation's health-check tasks when dropped.
struct Generation(watch::Sender<bool>);

impl Drop for Generation {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// Starts the background health checks and DNS updates of every pool of `rt`.
fn start_health_checks(rt: &Runtime) -> Generation {
    let (tx, rx) = watch::channel(false);
    for pool in rt.pools.values() {
        let lb = pool.lb.clone();
        let rx = rx.clone();
        tokio::spawn(async move { lb.run(rx, None).await });
    }
    Generation(tx)
}

/// Resolves every pool once, so the first requests after a (re)load find their peers.
pub async fn initial_discovery(rt: &Runtime) {
    for pool in rt.pools.values() {
        let update = tokio::time::timeout(Duration::from_secs(3), pool.lb.update()).await;
        if !matches!(update, Ok(Ok(()))) {
            log::warn!(target: targets::UPSTREAM, "initial discovery of {} peers did not complete; retrying in the background", pool.kind.name());
        }
    }
}

/// Loads the config file again; `Err` carries every problem, one per line.
pub fn load(source: &ConfigSource) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(&source.path).map_err(|e| {
        vec![format!(
            "{}: cannot read the config file: {e}",
            source.path.display()
        )]
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let loaded = Config::load(&text, &env, &source.overrides)?;
    for w in &loaded.warnings {
        log::warn!(target: targets::CONFIG, "{w}");
    }
    Ok(loaded.config)
}

impl Control {
    /// Applies a new config: new pools (resolved and health-checked before they take traffic),
    /// then one atomic swap. Requests in flight keep the runtime they started with.
    async fn reload(&self, generation: &mut Generation) {
        let result = match load(&self.source) {
            Ok(config) => {
                if let Err(e) = logging::init(&config.logging) {
                    log::warn!(target: targets::CONFIG, "reload: logging output could not be reopened: {e}");
                }
                let rt = Runtime::new(config);
                self.state.retarget_redis(&rt.config);
                self.state.identity.reload(&rt.config).await;
                initial_discovery(&rt).await;
                let next = start_health_checks(&rt);
                self.state.runtime.store(Arc::new(rt));
                *generation = next;
                log::info!(target: targets::CONFIG, "configuration reloaded from {}", self.source.path.display());
                "ok"
            }
            Err(problems) => {
                for p in &problems {
                    log::error!(target: targets::CONFIG, "reload rejected, keeping the running config: {p}");
                }
                "rejected"
            }
        };
        if let Some(m) = metrics::get() {
            m.reloads.with_label_values(&[result]).inc();
        }
    }

    /// After SIGTERM: exit once nothing is in flight (Pingora alone would sleep out the whole
    /// grace period even when idle), or when the grace period ends.
    async fn drain(&self) {
        log::info!(target: targets::SERVER, "SIGTERM: no longer accepting; draining in-flight requests (at most {} s)", self.grace.as_secs());
        let deadline = Instant::now() + self.grace;
        let mut idle_rounds = 0;
        while Instant::now() < deadline && idle_rounds < 3 {
            if self.state.inflight.load(Ordering::Acquire) == 0 {
                idle_rounds += 1;
            } else {
                idle_rounds = 0;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log::info!(target: targets::SERVER, "drained; exiting");
        // The spans of the last requests leave too (a dead collector costs at most this).
        crate::telemetry::flush(Duration::from_secs(2));
        log::logger().flush();
        std::process::exit(0);
    }
}

#[async_trait]
impl BackgroundService for Control {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut generation = start_health_checks(&self.state.runtime.load());
        let (Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            log::error!(target: targets::SERVER, "cannot install SIGHUP/SIGUSR1 handlers; reload by signal is off");
            let _ = shutdown.changed().await;
            return self.drain().await;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(&mut generation).await,
                _ = usr1.recv() => logging::reopen(),
                changed = shutdown.changed() => {
                    if changed.is_ok() {
                        self.drain().await;
                    }
                    return;
                }
            }
        }
    }
}
