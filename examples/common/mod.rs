//! Shared by the load-test baselines.

use pingora::server::configuration::ServerConf;
use pingora::server::Server;

/// A Pingora server with default settings, except that `NO_WORK_STEALING=1` runs it like the
/// gateway's default (`server.work_stealing: false`), so `loadtest/run.py` can match the two.
pub fn server() -> Server {
    let conf = ServerConf {
        work_stealing: std::env::var_os("NO_WORK_STEALING").is_none(),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    server
}
