//! Structured logs: a `log::Log` implementation writing JSON or text lines to stdout or a
//! file, with per-component debug targets (`DEBUG=gateway:router,gateway:cache`), and the
//! one-line-per-request access log.
//!
//! Components log under `gateway:<component>` targets (see [`targets`]). Nothing here ever
//! receives an API key or a prompt: callers pass key ids, fingerprints and sizes only.

use crate::config::{LogFormat, LogLevel, LogOutput, LoggingConfig};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::sync::{Mutex, OnceLock, RwLock};

/// Log targets, one per component, as `DEBUG` names them.
pub mod targets {
    pub const ACCESS: &str = "gateway:access";
    pub const AUTH: &str = "gateway:auth";
    pub const CACHE: &str = "gateway:cache";
    pub const CONFIG: &str = "gateway:config";
    pub const PROXY: &str = "gateway:proxy";
    pub const ROUTER: &str = "gateway:router";
    pub const SERVER: &str = "gateway:server";
    pub const UPSTREAM: &str = "gateway:upstream";
    pub const TRACING: &str = "gateway:tracing";
}

struct Settings {
    level: log::LevelFilter,
    format: LogFormat,
    include_request_id: bool,
    include_provider_info: bool,
    /// Targets that log at debug whatever `level` says; `*` means all gateway targets.
    debug_targets: Vec<String>,
}

enum Sink {
    Stdout,
    File(LineWriter<File>, std::path::PathBuf),
}

struct Logger {
    settings: RwLock<Settings>,
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
    }
}

fn settings_of(c: &LoggingConfig) -> Settings {
    Settings {
        level: level_filter(c.level),
        format: c.format,
        include_request_id: c.include_request_id,
        include_provider_info: c.include_provider_info,
        debug_targets: c.debug.clone(),
    }
}

fn open_sink(c: &LoggingConfig) -> std::io::Result<Sink> {
    match (c.output, &c.file) {
        (LogOutput::File, Some(path)) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            Ok(Sink::File(LineWriter::new(f), path.clone()))
        }
        _ => Ok(Sink::Stdout),
    }
}

/// Installs the logger (first call) or applies new settings (later calls, e.g. on reload).
pub fn init(c: &LoggingConfig) -> std::io::Result<()> {
    let sink = open_sink(c)?;
    if let Some(logger) = LOGGER.get() {
        if let Ok(mut s) = logger.settings.write() {
            *s = settings_of(c);
        }
        if let Ok(mut current) = logger.sink.lock() {
            *current = sink;
        }
    } else {
        let logger = LOGGER.get_or_init(|| Logger {
            settings: RwLock::new(settings_of(c)),
            sink: Mutex::new(sink),
        });
        let _ = log::set_logger(logger);
    }
    // The cheapest filter is the global one: records above it are never built, which keeps
    // Pingora's own debug! calls off the request path unless debug was asked for.
    let max = if c.debug.is_empty() {
        level_filter(c.level)
    } else {
        log::LevelFilter::Debug
    };
    log::set_max_level(max);
    Ok(())
}

/// Reopens the log file (after logrotate moved it).
pub fn reopen() {
    if let Some(logger) = LOGGER.get() {
        if let Ok(mut sink) = logger.sink.lock() {
            if let Sink::File(_, path) = &*sink {
                let path = path.clone();
                if let Ok(f) = OpenOptions::new().create(true).append(true).open(&path) {
                    *sink = Sink::File(LineWriter::new(f), path);
                }
            }
        }
    }
}

impl Settings {
    fn enabled(&self, level: log::Level, target: &str) -> bool {
        let ours = target.starts_with("gateway:");
        if level <= self.level {
            // Pingora's own info chatter stays out of an info log unless debug was asked for.
            return ours || level <= log::Level::Warn || self.level >= log::LevelFilter::Debug;
        }
        level == log::Level::Debug
            && ours
            && self.debug_targets.iter().any(|t| t == "*" || t == target)
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    level: &'a str,
    target: &'a str,
    message: String,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Logger {
    fn write_line(&self, line: &str) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes())
                        .and_then(|_| out.write_all(b"\n"))
                }
                Sink::File(f, _) => f
                    .write_all(line.as_bytes())
                    .and_then(|_| f.write_all(b"\n")),
            };
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.settings
            .read()
            .map(|s| s.enabled(m.level(), m.target()))
            .unwrap_or(false)
    }

    fn log(&self, record: &log::Record) {
        let Ok(settings) = self.settings.read() else {
            return;
        };
        if !settings.enabled(record.level(), record.target()) {
            return;
        }
        let level = record.level().as_str().to_ascii_lowercase();
        let line = match settings.format {
            LogFormat::Json => serde_json::to_string(&JsonLine {
                time: now_rfc3339(),
                level: &level,
                target: record.target(),
                message: record.args().to_string(),
            })
            .unwrap_or_default(),
            LogFormat::Text => format!(
                "{} {:5} {} {}",
                now_rfc3339(),
                level.to_uppercase(),
                record.target(),
                record.args()
            ),
        };
        drop(settings);
        self.write_line(&line);
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stdout => std::io::stdout().flush(),
                Sink::File(f, _) => f.flush(),
            };
        }
    }
}

/// Everything one access-log line says about a request.
#[derive(Debug, Default, Serialize)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub peer: Option<&'a str>,
    pub attempts: u32,
    pub cache: &'a str,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub key_id: Option<&'a str>,
    pub key_source: Option<&'a str>,
    pub client_ip: Option<std::net::IpAddr>,
    pub error: Option<&'a str>,
}

#[derive(Serialize)]
struct AccessJson<'a> {
    time: String,
    level: &'static str,
    target: &'static str,
    message: &'static str,
    #[serde(flatten)]
    record: &'a AccessRecord<'a>,
}

/// Writes the access-log line for one request.
pub fn access(record: &AccessRecord) {
    let Some(logger) = LOGGER.get() else { return };
    let Ok(settings) = logger.settings.read() else {
        return;
    };
    if settings.level < log::LevelFilter::Info {
        return;
    }
    let mut r = AccessRecord { ..*record };
    if !settings.include_request_id {
        r.request_id = "";
    }
    if !settings.include_provider_info {
        r.provider = None;
        r.model = None;
        r.peer = None;
    }
    let line = match settings.format {
        LogFormat::Json => serde_json::to_string(&AccessJson {
            time: now_rfc3339(),
            level: "info",
            target: targets::ACCESS,
            message: "request",
            record: &r,
        })
        .unwrap_or_default(),
        LogFormat::Text => {
            let mut s = format!(
                "{} INFO  {} {} {} {} {:.2}ms",
                now_rfc3339(),
                targets::ACCESS,
                r.method,
                r.path,
                r.status,
                r.duration_ms
            );
            let mut kv = |k: &str, v: Option<&str>| {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    s.push_str(&format!(" {k}={v}"));
                }
            };
            kv("request_id", Some(r.request_id));
            kv("route", Some(r.route));
            kv("provider", r.provider);
            kv("model", r.model);
            kv("peer", r.peer);
            kv("cache", Some(r.cache));
            kv("key_id", r.key_id);
            kv("error", r.error);
            s.push_str(&format!(" attempts={}", r.attempts));
            if let (Some(p), Some(c)) = (r.prompt_tokens, r.completion_tokens) {
                s.push_str(&format!(" tokens={p}/{c}"));
            }
            s
        }
    };
    drop(settings);
    logger.write_line(&line);
}
