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
    let mut conf = ServerConf::default();
    conf.threads = config.server.threads;
    conf.grace_period_seconds = Some(config.server.grace_period.as_secs());
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let listen = if config.server.host.contains(':') {
        format!("[{}]:{}", config.server.host, config.server.port)
    } else {
        format!("{}:{}", config.server.host, config.server.port)
    };
    let threads = config.server.threads;
    let tls = config.server.tls.clone();
    let runtime = Runtime::new(config);
    for (kind, pool) in &runtime.pools {
        let service = GenBackgroundService::new(format!("health checks: {}", kind.name()), pool.lb.clone());
        server.add_service(service);
    }
    let state = Arc::new(State::new(runtime));
    let mut proxy = pingora::proxy::http_proxy_service_with_name(&server.configuration, Gateway { state }, "llm-gateway");
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
