//! Wiring only: parse arguments, load the config, run the server.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_gateway::cli::{self, Command};
use llm_gateway::config::{Config, ENV_VARS};
use llm_gateway::control::ConfigSource;
use llm_gateway::{logging, server};
use std::process::ExitCode;

/// mimalloc: the request path allocates many small, short-lived objects (headers, futures),
/// where glibc malloc spent about a fifth of the gateway's user time in profiles. Built with
/// `no_thp`: transparent huge pages would nearly double the idle RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("llm-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match &args.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("llm-gateway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::ListEnv => {
            for name in ENV_VARS {
                println!("{name}");
            }
            return ExitCode::SUCCESS;
        }
        Command::HealthProbe(url) => {
            return if cli::health_probe(url) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Run | Command::Check => {}
    }
    let path = args
        .config
        .clone()
        .or_else(|| {
            std::env::var_os("GATEWAY_CONFIG")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        })
        .unwrap_or_else(|| "conf/gateway.yaml".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read the config file: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let loaded = match Config::load(&text, &env, &args.overrides) {
        Ok(l) => l,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if args.command == Command::Check {
        let shown =
            serde_json::to_string_pretty(&loaded.config.redacted_json()).unwrap_or_default();
        println!("{shown}");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&loaded.config.logging) {
        eprintln!("logging: cannot open the log output: {e}");
        return ExitCode::from(2);
    }
    for w in &loaded.warnings {
        log::warn!(target: logging::targets::CONFIG, "{w}");
    }
    if let Err(e) = llm_gateway::telemetry::init(&loaded.config.tracing) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let source = ConfigSource {
        path: path.clone(),
        overrides: args.overrides.clone(),
    };
    match server::build(loaded.config, source) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
