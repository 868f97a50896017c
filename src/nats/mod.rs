//! ipckit on NATS: events in a JetStream stream, so the monitor and the command line reach beyond one
//! machine (feature `nats`).
//!
//! - [`mapping`]: the stream, the subjects (from event types), the headers and the payload, and which
//!   filters the server can narrow ([`Mapping::narrow`]).
//! - [`Publisher`]: publishes events with a window of outstanding acks, resending what was not
//!   acknowledged after NATS comes back (the server drops what it already has, by message id).
//! - [`StreamReader`]: reads events back from a sequence, a time, or the newest N, then live (an
//!   ordered consumer), each with its origin and the stream sequence as its id, and says in place
//!   where events are missing ([`NatsItem::Lost`], [`NatsItem::OriginLost`]).
//! - [`bridge`]: forwards a local bus to the stream and resumes after either side restarts.
//!
//! Credentials come from the URL (`nats://user:pass@host`, `nats://token@host`), a creds file, and
//! TLS from the URL (`tls://`); none of them is ever printed ([`redacted_url`]).

pub mod bridge;
pub mod mapping;
mod publish;
mod read;

pub use mapping::{subject_token, Mapping, DEFAULT_STREAM};
pub use publish::{Acked, Prepared, Publisher, DEFAULT_WINDOW};
pub use read::{Narrowing, NatsEvent, NatsItem, Start, StreamReader};

use async_nats::jetstream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where NATS is and which stream to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The server URL (`nats://host:4222`, `tls://...`, with `user:pass@` or `token@` if needed);
    /// several may be given separated by commas.
    pub url: String,
    /// The stream name ([`DEFAULT_STREAM`] by default); its subjects are its name in lowercase and a
    /// dot ([`Mapping::new`]).
    pub stream: String,
    /// A credentials file (JWT and NKey seed), as `nats` tools take it.
    pub creds: Option<PathBuf>,
    /// Limits given on the command line: used when creating the stream, checked against one that
    /// exists.
    pub limits: StreamLimits,
}

impl NatsOptions {
    /// Options for `url` with the default stream, no credentials file and no limits given.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            creds: None,
            limits: StreamLimits::default(),
        }
    }

    /// The mapping onto the stream.
    pub fn mapping(&self) -> Mapping {
        Mapping::new(&self.stream)
    }

    /// A label for people: `STREAM@host:port`, credentials left out.
    pub fn label(&self) -> String {
        format!("{}@{}", self.stream, redacted_url(&self.url))
    }
}

/// Limits of the stream, each `None` when not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most events kept (`--max-events`).
    pub max_events: Option<u64>,
    /// Oldest event kept (`--max-age`).
    pub max_age: Option<Duration>,
    /// Most bytes kept (`--max-bytes`).
    pub max_bytes: Option<u64>,
}

/// Events a stream this crate creates keeps when `--max-events` is not given.
pub const DEFAULT_MAX_EVENTS: u64 = 1_000_000;
/// Bytes a stream this crate creates keeps when `--max-bytes` is not given (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// What went wrong with NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No server answered, or it refused us.
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect {
        /// The URL, credentials left out.
        url: String,
        /// Why.
        detail: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Creds {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server has no JetStream.
    #[error("the NATS server at {url} has no JetStream (start it with -js)")]
    NoJetStream {
        /// The URL, credentials left out.
        url: String,
    },
    /// The stream exists but is not one events can go to as asked.
    #[error("stream {stream}: {problem}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What is wrong, with what to do.
        problem: String,
    },
    /// A JetStream request failed.
    #[error("{what}: {detail}")]
    Request {
        /// What was being done.
        what: String,
        /// The error.
        detail: String,
    },
    /// Events could not be published within the time allowed.
    #[error("NATS did not acknowledge the event within {0:?} (is it running, with JetStream?)")]
    NotAcknowledged(Duration),
    /// The local bus failed (the bridge).
    #[error(transparent)]
    Bus(#[from] crate::transport::ClientError),
}

impl NatsError {
    pub(crate) fn request(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        NatsError::Request {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// `url` without user, password or token: `nats://127.0.0.1:4222`. Each of several comma-separated
/// URLs is cut so.
///
/// ```
/// assert_eq!(ipckit::nats::redacted_url("nats://me:secret@host:4222"), "nats://host:4222");
/// assert_eq!(ipckit::nats::redacted_url("tok@a:1,b:2"), "a:1,b:2");
/// ```
pub fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = match one.find("://") {
                Some(at) => one.split_at(at + 3),
                None => ("", one),
            };
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}{host}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connection events a caller may want to follow (the monitor shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected (again).
    Connected,
    /// The connection was lost.
    Disconnected,
    /// The next attempt to connect is in this long.
    Retrying(Duration),
}

/// The delay before reconnect attempt `attempt` (from 1): 100 ms, doubling, at most 2 s, as for the
/// socket.
pub fn retry_delay(attempt: usize) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(5);
    (Duration::from_millis(100) * 2u32.pow(exp)).min(Duration::from_secs(2))
}

/// Connects to NATS. With `links`, connection changes and each reconnect attempt are sent there, and
/// the first connection is made in the background (the call returns at once); without, a server that
/// does not answer is an error.
///
/// # Errors
///
/// No server answers (without `links`), the credentials file cannot be read, authentication fails.
pub async fn connect(
    options: &NatsOptions,
    links: Option<tokio::sync::mpsc::UnboundedSender<Link>>,
) -> Result<async_nats::Client, NatsError> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(concat!("ipckit-top ", env!("CARGO_PKG_VERSION")))
        .connection_timeout(Duration::from_secs(5))
        .client_capacity(8192);
    if let Some(path) = &options.creds {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|source| NatsError::Creds {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(links) = links {
        let events = links.clone();
        // The first connection is tried at once (async-nats asks the delay callback before every
        // attempt, the first included); after a first connection, reconnects wait as before.
        let connected_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&connected_once);
        connect = connect
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let events = events.clone();
                if event == async_nats::Event::Connected {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                async move {
                    let link = match event {
                        async_nats::Event::Connected => Link::Connected,
                        async_nats::Event::Disconnected => Link::Disconnected,
                        _ => return,
                    };
                    let _ = events.send(link);
                }
            })
            .reconnect_delay_callback(move |attempt| {
                if attempt <= 1 && !connected_once.load(std::sync::atomic::Ordering::Relaxed) {
                    return Duration::ZERO;
                }
                let delay = retry_delay(attempt);
                let _ = links.send(Link::Retrying(delay));
                delay
            });
    } else {
        connect = connect.reconnect_delay_callback(retry_delay);
    }
    let servers: Vec<&str> = options.url.split(',').map(str::trim).collect();
    let addrs = servers
        .iter()
        .map(|s| s.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NatsError::Connect {
            url: redacted_url(&options.url),
            detail: format!("not a NATS URL: {e}"),
        })?;
    connect
        .connect(addrs.as_slice())
        .await
        .map_err(|e| NatsError::Connect {
            url: redacted_url(&options.url),
            detail: e.to_string(),
        })
}

/// A JetStream context on `client` whose requests and acks wait at most `timeout`.
pub fn jetstream(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .max_ack_inflight(64 * 1024)
        .backpressure_on_inflight(true)
        .build(client)
}

/// The stream events go to: created when absent with `options.limits` (or the defaults,
/// [`DEFAULT_MAX_EVENTS`] and [`DEFAULT_MAX_BYTES`]), checked when present: it must take the
/// mapping's subjects, keep events by limits, and have the limits given.
///
/// # Errors
///
/// JetStream is not enabled, the stream is not one this crate can use (the message says why and what
/// to do), or a request failed.
pub async fn ensure_stream(
    js: &jetstream::Context,
    options: &NatsOptions,
) -> Result<jetstream::stream::Stream, NatsError> {
    let mapping = options.mapping();
    let name = mapping.stream();
    if !mapping::valid_stream_name(name) {
        return Err(NatsError::Stream {
            stream: name.to_owned(),
            problem: "not a stream name (no spaces, dots, `*`, `>` or slashes)".into(),
        });
    }
    let no_js = || NatsError::NoJetStream {
        url: redacted_url(&options.url),
    };
    match js.get_stream(name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| NatsError::request(format!("stream {name}"), e))?;
            check_stream(&info.config, options)?;
            Ok(stream)
        }
        Err(err) => {
            use async_nats::jetstream::context::GetStreamErrorKind;
            match err.kind() {
                GetStreamErrorKind::JetStream(e)
                    if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND => {}
                GetStreamErrorKind::JetStream(e)
                    if e.error_code()
                        == async_nats::jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
                        || e.error_code()
                            == async_nats::jetstream::ErrorCode::JETSTREAM_NOT_ENABLED =>
                {
                    return Err(no_js())
                }
                GetStreamErrorKind::Request if is_no_responders(&err) => return Err(no_js()),
                _ => return Err(NatsError::request(format!("stream {name}"), err)),
            }
            let limits = options.limits;
            let config = jetstream::stream::Config {
                name: name.to_owned(),
                description: Some("ipckit events (ipckit-top)".into()),
                subjects: vec![mapping.all_subjects()],
                max_messages: to_i64(limits.max_events.unwrap_or(DEFAULT_MAX_EVENTS)),
                max_bytes: to_i64(limits.max_bytes.unwrap_or(DEFAULT_MAX_BYTES)),
                max_age: limits.max_age.unwrap_or_default(),
                storage: jetstream::stream::StorageType::File,
                allow_direct: true,
                ..Default::default()
            };
            match js.create_stream(config).await {
                Ok(stream) => Ok(stream),
                // Another process created it first: use theirs, checked.
                Err(refused) => {
                    let Ok(mut stream) = js.get_stream(name).await else {
                        // Not there after all: the server's reason is the one to give.
                        return Err(NatsError::Stream {
                            stream: name.to_owned(),
                            problem: refusal(&refused.to_string(), &limits),
                        });
                    };
                    let info = stream
                        .info()
                        .await
                        .map_err(|e| NatsError::request(format!("stream {name}"), e))?;
                    check_stream(&info.config, options)?;
                    Ok(stream)
                }
            }
        }
    }
}

/// Why the server refused to create the stream, with what to do when it is short of storage (a
/// server refuses a stream whose `max_bytes` its JetStream storage cannot hold: with
/// `max_file_store` set, or less disk free than asked for).
fn refusal(reason: &str, limits: &StreamLimits) -> String {
    let mut text = format!("the server refused to create it: {reason}");
    if reason.contains("10047") || reason.contains("insufficient") {
        let asked = limits.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        text.push_str(&format!(
            " (it was asked to keep up to {asked} bytes: give the server more JetStream storage, \
             `max_file_store`, or ask for less with --max-bytes)"
        ));
    }
    text
}

fn is_no_responders(err: &dyn std::error::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("no responders") {
            return true;
        }
        source = e.source();
    }
    false
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Checks an existing stream's configuration against what `options` need.
fn check_stream(
    config: &jetstream::stream::Config,
    options: &NatsOptions,
) -> Result<(), NatsError> {
    let mapping = options.mapping();
    let wanted = mapping.all_subjects();
    let problem = |problem: String| NatsError::Stream {
        stream: config.name.clone(),
        problem,
    };
    if !config.subjects.iter().any(|s| *s == wanted || s == ">") {
        return Err(problem(format!(
            "it exists but does not take the subjects {wanted} (it takes {}); give another --stream",
            if config.subjects.is_empty() {
                "none".to_owned()
            } else {
                config.subjects.join(", ")
            }
        )));
    }
    if config.retention != jetstream::stream::RetentionPolicy::Limits {
        return Err(problem(format!(
            "it keeps events by {:?} retention; events are kept by limits (and read by any number of \
             monitors): give another --stream",
            config.retention
        )));
    }
    let limits = options.limits;
    let unlimited = |n: i64| n <= 0;
    let mut differ = Vec::new();
    if let Some(max) = limits.max_events {
        if unlimited(config.max_messages) || config.max_messages != to_i64(max) {
            differ.push(format!(
                "--max-events {max} (it keeps {}; nats stream edit {} --max-msgs={max})",
                describe_limit(config.max_messages),
                config.name
            ));
        }
    }
    if let Some(max) = limits.max_bytes {
        if unlimited(config.max_bytes) || config.max_bytes != to_i64(max) {
            differ.push(format!(
                "--max-bytes {max} (it keeps {} bytes; nats stream edit {} --max-bytes={max})",
                describe_limit(config.max_bytes),
                config.name
            ));
        }
    }
    if let Some(max) = limits.max_age {
        if config.max_age != max {
            let kept = if config.max_age.is_zero() {
                "events of any age".to_owned()
            } else {
                format!("events for {}", humantime::format_duration(config.max_age))
            };
            differ.push(format!(
                "--max-age {} (it keeps {kept}; nats stream edit {} --max-age={})",
                humantime::format_duration(max),
                config.name,
                humantime::format_duration(max)
            ));
        }
    }
    if !differ.is_empty() {
        return Err(problem(format!(
            "it exists with other limits than {}; change the stream, or leave the flags out",
            differ.join(", ")
        )));
    }
    Ok(())
}

fn describe_limit(n: i64) -> String {
    if n <= 0 {
        "no limit".to_owned()
    } else {
        n.to_string()
    }
}

/// The host name, for `--origin`'s default.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
            if !name.is_empty() {
                return name;
            }
        }
    }
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A new origin instance for a process that publishes straight to NATS: its origin, process id and
/// start time, so two runs never share message ids.
pub fn process_instance(origin: &str) -> Arc<str> {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    Arc::from(format!("{origin}-{}-{micros:x}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(redacted_url("nats://u:p@h:1"), "nats://h:1");
        assert_eq!(redacted_url("tls://s3cr3t@h"), "tls://h");
        assert_eq!(redacted_url("a@b:1, nats://c:d@e:2"), "b:1,nats://e:2");
    }

    #[test]
    fn retries_back_off_to_two_seconds() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(200));
        assert_eq!(retry_delay(6), Duration::from_secs(2));
        assert_eq!(retry_delay(usize::MAX), Duration::from_secs(2));
    }
}
