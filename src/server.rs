//! Builds the Pingora server: the proxy service, the control service (health checks, reload,
//! drain), and the server settings (threads, graceful shutdown).

use crate::config::Config;
use crate::control::{self, ConfigSource, Control};
use crate::logging::targets;
use crate::proxy::Gateway;
use crate::state::{Runtime, State};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use std::sync::Arc;

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
    let runtime = Runtime::new(config);
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(control::initial_discovery(&runtime));
    }
    let state = Arc::new(State::new(runtime));
    let control = Control {
        state: state.clone(),
        source,
        grace,
    };
    server.add_service(GenBackgroundService::new(
        "control".into(),
        Arc::new(control),
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
            let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&cert, &key)
                .map_err(|e| format!("server.tls: could not load the certificate or key: {e}"))?;
            settings.enable_h2();
            proxy.add_tls_with_settings(&listen, None, settings);
        }
        None => proxy.add_tcp(&listen),
    }
    proxy.threads = Some(threads);
    server.add_service(proxy);
    log::info!(target: targets::SERVER, "llm-gateway {} listening on {listen}", env!("CARGO_PKG_VERSION"));
    Ok(server)
}
