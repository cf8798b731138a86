//! Builds the Pingora server: the proxy service, one health-check background service per
//! provider pool, and the server settings (threads, graceful shutdown).

use crate::config::Config;
use crate::logging::targets;
use crate::proxy::Gateway;
use crate::state::{Runtime, State};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use std::sync::Arc;

/// Builds the server ready to run; `Err` names what could not be set up.
pub fn build(config: Config) -> Result<Server, String> {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let listen = if config.server.host.contains(':') {
        format!("[{}]:{}", config.server.host, config.server.port)
    } else {
        format!("{}:{}", config.server.host, config.server.port)
    };
    let threads = config.server.threads;
    let grace_period = config.server.grace_period;
    let tls = config.server.tls.clone();
    let runtime = Runtime::new(config);
    initial_discovery(&runtime);
    for (kind, pool) in &runtime.pools {
        let service =
            GenBackgroundService::new(format!("health checks: {}", kind.name()), pool.lb.clone());
        server.add_service(service);
    }
    let state = Arc::new(State::new(runtime));
    server.add_service(GenBackgroundService::new(
        "drain".into(),
        Arc::new(Drain {
            state: state.clone(),
            grace: grace_period,
        }),
    ));
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway { state },
        "llm-gateway",
    );
    match tls {
        Some(tls) => {
            let cert = tls.cert.to_string_lossy().to_string();
            let key = tls.key.to_string_lossy().to_string();
            proxy
                .add_tls(&listen, &cert, &key)
                .map_err(|e| format!("server.tls: could not load the certificate or key: {e}"))?;
        }
        None => proxy.add_tcp(&listen),
    }
    proxy.threads = Some(threads);
    server.add_service(proxy);
    log::info!(target: targets::SERVER, "llm-gateway {} listening on {listen}", env!("CARGO_PKG_VERSION"));
    Ok(server)
}

/// Resolves every pool once before serving, so the first requests find their peers; names
/// that do not resolve in time are retried by the background updates.
fn initial_discovery(runtime: &Runtime) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        for pool in runtime.pools.values() {
            let update = tokio::time::timeout(std::time::Duration::from_secs(3), pool.lb.update()).await;
            if !matches!(update, Ok(Ok(()))) {
                log::warn!(target: targets::UPSTREAM, "initial discovery of {} peers did not complete; retrying in the background", pool.kind.name());
            }
        }
    });
}

/// Ends the process as soon as a graceful shutdown has no request left in flight. Pingora
/// itself would sleep out the whole grace period even when idle, which slows every rollout.
struct Drain {
    state: Arc<State>,
    grace: std::time::Duration,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Drain {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        log::info!(target: targets::SERVER, "SIGTERM: no longer accepting; draining in-flight requests (at most {} s)", self.grace.as_secs());
        let deadline = std::time::Instant::now() + self.grace;
        // Idle for a moment in a row: no request between two looks.
        let mut idle_rounds = 0;
        while std::time::Instant::now() < deadline {
            if self
                .state
                .inflight
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
            {
                idle_rounds += 1;
                if idle_rounds >= 3 {
                    break;
                }
            } else {
                idle_rounds = 0;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        log::info!(target: targets::SERVER, "drained; exiting");
        log::logger().flush();
        std::process::exit(0);
    }
}
