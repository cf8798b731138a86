//! Command-line parsing. Hand-written: a handful of flags does not justify a parser crate.

use crate::config::{LogFormat, LogLevel, Overrides};
use std::path::PathBuf;

pub const USAGE: &str = "\
llm-gateway — an OpenAI/Gemini LLM API gateway on Cloudflare Pingora

USAGE:
    llm-gateway [OPTIONS]

OPTIONS:
    -c, --config PATH        config file (default: $GATEWAY_CONFIG, else conf/gateway.yaml)
        --check              validate the config, print it with secrets redacted, exit
        --host HOST          listen address (overrides server.host and GATEWAY_HOST)
    -p, --port PORT          listen port (overrides server.port and GATEWAY_PORT)
        --log-level LEVEL    debug | info | warn | error
        --log-format FORMAT  json | text
        --list-env           print every environment variable the gateway reads
        --health-probe URL   GET URL once; exit 0 on a 2xx (for container health checks)
    -h, --help               this text
    -V, --version            the version
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run,
    Check,
    ListEnv,
    HealthProbe(String),
    Help,
    Version,
}

#[derive(Debug, Clone)]
pub struct Args {
    pub command: Command,
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        command: Command::Run,
        config: None,
        overrides: Overrides::default(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-c" | "--config" => out.config = Some(PathBuf::from(value("--config")?)),
            "--check" | "-t" | "--test" => out.command = Command::Check,
            "--host" => out.overrides.host = Some(value("--host")?),
            "-p" | "--port" => {
                let v = value("--port")?;
                out.overrides.port =
                    Some(v.parse().map_err(|_| {
                        "--port: expected a port number from 0 to 65535".to_string()
                    })?);
            }
            "--log-level" => {
                let v = value("--log-level")?;
                out.overrides.log_level = Some(match v.to_ascii_lowercase().as_str() {
                    "debug" => LogLevel::Debug,
                    "info" => LogLevel::Info,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    _ => return Err("--log-level: expected one of debug, info, warn, error".into()),
                });
            }
            "--log-format" => {
                let v = value("--log-format")?;
                out.overrides.log_format = Some(match v.to_ascii_lowercase().as_str() {
                    "json" => LogFormat::Json,
                    "text" => LogFormat::Text,
                    _ => return Err("--log-format: expected one of json, text".into()),
                });
            }
            "--list-env" => out.command = Command::ListEnv,
            "--health-probe" => out.command = Command::HealthProbe(value("--health-probe")?),
            "-h" | "--help" => out.command = Command::Help,
            "-V" | "--version" => out.command = Command::Version,
            // An unknown flag is named (up to any `=`); anything else might be a key pasted
            // in the wrong place, so it is not repeated.
            other if other.starts_with("--") && other.len() <= 40 => {
                let name = other.split('=').next().unwrap_or(other);
                return Err(format!("unknown option {name} (see --help)"));
            }
            _ => return Err("unexpected argument (see --help)".into()),
        }
    }
    Ok(out)
}

/// One plain HTTP/1.1 GET; true on a 2xx. For distroless images, which have no curl.
pub fn health_probe(url: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(addr) = crate::upstream::PeerAddress::parse(url) else {
        return false;
    };
    if addr.tls {
        return false;
    }
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());
    let timeout = std::time::Duration::from_secs(3);
    let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(addr.host.as_str(), addr.port))
    else {
        return false;
    };
    let Some(sock) = addrs.next() else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&sock, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.authority()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags() {
        let a = p(&[
            "--config",
            "x.yaml",
            "--check",
            "--port=9001",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(a.command, Command::Check);
        assert_eq!(a.config, Some(PathBuf::from("x.yaml")));
        assert_eq!(a.overrides.port, Some(9001));
        assert_eq!(a.overrides.log_level, Some(LogLevel::Debug));
        assert_eq!(p(&["-c"]).unwrap_err(), "--config needs a value");
        assert_eq!(
            p(&["--port", "x"]).unwrap_err(),
            "--port: expected a port number from 0 to 65535"
        );
        assert!(p(&["--bogus"]).is_err());
    }
}
