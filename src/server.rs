//! Builds the Pingora server: the proxy service, the control service (health checks, reload,
//! drain), and the server settings (threads, graceful shutdown).

use crate::config::Config;
use crate::control::{self, ConfigSource, Control};
use crate::guard::{Guarded, Limits};
use crate::logging::targets;
use crate::proxy::Gateway;
use crate::state::{Runtime, State};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Builds the server ready to run; `Err` names what could not be set up.
pub fn build(config: Config, source: ConfigSource) -> Result<Server, String> {
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
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
    let grace = config.server.grace_period;
    let tls = config.server.tls.clone();
    let limits = Limits {
        max_header_bytes: config.server.max_header_bytes,
        header_timeout: config.server.header_timeout,
        idle_timeout: config.server.idle_timeout,
    };
    let identity = crate::identity::Identity::new(&config)?;
    let runtime = Runtime::new(config);
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(control::initial_discovery(&runtime));
        rt.block_on(identity.start());
    }
    server.add_service(GenBackgroundService::new(
        "identity".into(),
        Arc::new(crate::identity::Refresher {
            identity: identity.clone(),
        }),
    ));
    let state = Arc::new(State::new(runtime, identity));
    let control = Control {
        state: state.clone(),
        source,
        grace,
    };
    server.add_service(GenBackgroundService::new(
        "control".into(),
        Arc::new(control),
    ));
    server.add_service(GenBackgroundService::new(
        "stream-stopper".into(),
        Arc::new(StreamStopper {
            state: state.clone(),
            grace,
        }),
    ));
    let app = pingora::proxy::http_proxy(&server.configuration, Gateway { state });
    let mut proxy = pingora::services::listening::Service::new(
        "llm-gateway".to_string(),
        Guarded {
            inner: Arc::new(app),
            limits,
        },
    );
    // Pingora gives every accepted connection a 64 KiB read buffer (filled with zeroes, so
    // each one is resident once reused): an idle keep-alive connection then costs ~100 KB.
    // Its HTTP/1 parser reads into buffers of its own, so the extra layer only adds a copy.
    let l4 = pingora::listeners::L4BufferSettings::new(
        0,
        pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE,
    );
    let mut listener = pingora::listeners::ListenerConfig::tcp(listen.clone()).l4_buffer(l4);
    if let Some(tls) = tls {
        let cert = tls.cert.to_string_lossy().to_string();
        let key = tls.key.to_string_lossy().to_string();
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&cert, &key)
            .map_err(|e| format!("server.tls: could not load the certificate or key: {e}"))?;
        settings.enable_h2();
        listener = listener.tls(settings);
    }
    proxy.add_listener(listener);
    proxy.threads = Some(threads);
    server.add_service(proxy);
    log::info!(target: targets::SERVER, "llm-gateway {} listening on {listen}", env!("CARGO_PKG_VERSION"));
    Ok(server)
}

/// Ends answers still streaming shortly before the drain grace period runs out (the control
/// service exits the process then): each gets an error event and a clean end of body rather
/// than a connection cut mid-chunk. Between bursts it also hands freed memory back to the
/// system, so RSS falls after many connections close.
struct StreamStopper {
    state: Arc<State>,
    grace: Duration,
}

/// How often freed allocator pages are returned to the system.
const PURGE_EVERY: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for StreamStopper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut purge = tokio::time::interval(PURGE_EVERY);
        loop {
            tokio::select! {
                _ = purge.tick() => crate::guard::purge_freed_memory(),
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        // Leave the streams enough of the grace period to write their last event.
        let margin = (self.grace / 4).min(Duration::from_millis(500));
        tokio::time::sleep(self.grace.saturating_sub(margin)).await;
        log::info!(target: targets::SERVER, "drain grace period ending: closing the answers still streaming");
        self.state.stopping.send_replace(true);
    }
}
