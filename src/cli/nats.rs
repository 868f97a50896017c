//! The command line on NATS: `--nats URL` (and `IPCKIT_NATS`) puts `publish`, `progress`, `pipe`,
//! `events` and the monitor on a JetStream stream instead of the socket, and `bridge` forwards a
//! local bus there. Each subcommand's socket path is left as it is; these are taken early instead.

use super::{
    bound, exit_status, json_line_error, line_event, stdin_lines, CliError, Command, EventsArgs,
    Format, PipeArgs, PipeSink, PipedLine, PublishArgs,
};
use crate::event_stream::Bound;
use crate::nats::bridge::{self, BridgeOptions};
use crate::nats::{
    connect, ensure_stream, host_name, jetstream, process_instance, NatsEvent, NatsItem,
    NatsOptions, Publisher, Start, StreamLimits, StreamReader, DEFAULT_WINDOW,
};
use crate::transport::frame::NewEvent;
use crate::{Event, EventFilter};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long `publish`, `progress` and `pipe` wait for NATS to acknowledge before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// The NATS options, on every subcommand.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server URL: use a JetStream stream instead of the socket (nats://host:4222; tls:// for
    /// TLS; user:pass@ or token@ for credentials, never printed)
    #[arg(long, global = true, env = "IPCKIT_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// The JetStream stream; its subjects are its name in lowercase, then a dot
    #[arg(
        long,
        global = true,
        env = "IPCKIT_STREAM",
        value_name = "NAME",
        default_value = crate::nats::DEFAULT_STREAM
    )]
    pub stream: String,
    /// A NATS credentials file (JWT and NKey seed)
    #[arg(long, global = true, env = "IPCKIT_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Most events the stream keeps: used when creating it, checked against one that exists
    /// [default when creating: 1000000]
    #[arg(long, global = true, value_name = "N", value_parser = positive)]
    pub max_events: Option<u64>,
    /// Oldest event the stream keeps (30m, 7d): used when creating it, checked against one that
    /// exists [default when creating: no limit]
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    pub max_age: Option<Duration>,
    /// Most bytes the stream keeps (500M, 2GiB): used when creating it, checked against one that
    /// exists [default when creating: 1GiB]
    #[arg(long, global = true, value_name = "BYTES", value_parser = bytes)]
    pub max_bytes: Option<u64>,
}

impl NatsArgs {
    /// The NATS options, if `--nats` was given.
    pub fn options(&self) -> Option<NatsOptions> {
        let url = self.nats.clone()?;
        Some(NatsOptions {
            url,
            stream: self.stream.clone(),
            creds: self.nats_creds.clone(),
            limits: StreamLimits {
                max_events: self.max_events,
                max_age: self.max_age,
                max_bytes: self.max_bytes,
            },
        })
    }
}

fn positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (try 30m, 12h, 7d)")),
    }
}

/// A byte count: digits, then optionally K, M, G or T (powers of 1000) or KiB, MiB, GiB, TiB (of
/// 1024), with or without a B.
fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 500M or 2GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(format!("`{text}` is not a size (try 500M or 2GiB)")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err("must be at least 1 byte".into()),
        Some(n) => Ok(n),
        None => Err(format!("`{text}` is too large")),
    }
}

/// `bridge` arguments.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The origin name the events carry (a machine or bus label) [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub origin: Option<String>,
    /// Forward only the events matching this filter expression
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Acks NATS may owe at once
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW, value_parser = clap::value_parser!(usize))]
    pub window: usize,
}

/// Runs `command` on NATS when `nats` is given and the command has a NATS path; hands the command
/// back otherwise.
pub(super) async fn run_command(
    nats: Option<NatsOptions>,
    socket: PathBuf,
    command: Command,
) -> Result<Result<ExitCode, CliError>, Command> {
    let Some(nats) = nats else {
        return match command {
            Command::Bridge(_) => Ok(Err(CliError::Usage(
                "bridge needs --nats URL (or IPCKIT_NATS): where to forward the bus to".into(),
            ))),
            other => Err(other),
        };
    };
    Ok(match command {
        Command::Publish(args) => publish(&nats, args).await,
        Command::Progress(args) => match super::progress_event(&args) {
            Ok(event) => publish_one(&nats, event).await,
            Err(e) => Err(e),
        },
        Command::Pipe(args) => pipe(&nats, args).await,
        Command::Events(args) => events(&nats, args).await,
        Command::Bridge(args) => bridge(&nats, socket, args).await,
        #[cfg(unix)]
        Command::Mcp(args) => crate::mcp::run(crate::mcp::McpOptions {
            destination: crate::mcp::Destination::Nats(nats),
            name: args.name,
            inject: !args.no_inject,
            command: args.command,
        })
        .await
        .map_err(CliError::from),
        other => return Err(other),
    })
}

/// A publisher to the stream, checked or created first, as origin the host name.
async fn publisher(nats: &NatsOptions) -> Result<(Publisher, Arc<str>), CliError> {
    let client = connect(nats, None).await?;
    let js = jetstream(client, Duration::from_secs(5));
    ensure_stream(&js, nats).await?;
    let origin = host_name();
    let instance = process_instance(&origin);
    let publisher =
        Publisher::new(js, nats.mapping(), &origin, DEFAULT_WINDOW).give_up_after(GIVE_UP_AFTER);
    Ok((publisher, instance))
}

/// Publishes one event and prints its stream sequence.
async fn publish_one(nats: &NatsOptions, mut event: Event) -> Result<ExitCode, CliError> {
    let (mut publisher, instance) = publisher(nats).await?;
    event.id = 1;
    publisher.send(&instance, &event, None).await?;
    let acked = publisher.flush().await?;
    if let Some(acked) = acked.last() {
        println!("{}", acked.sequence);
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish(nats: &NatsOptions, args: PublishArgs) -> Result<ExitCode, CliError> {
    if !args.stdin {
        let event = super::publish_event(args)?;
        return publish_one(nats, event).await;
    }
    let (mut publisher, instance) = publisher(nats).await?;
    let mut lines = stdin_lines();
    let (mut total, mut bad) = (0usize, 0usize);
    let mut next_id = 0u64;
    while let Some((number, line)) = lines.recv().await {
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                total += 1;
                bad += 1;
                eprintln!("ipckit-top: line {number}: {e}");
                continue;
            }
            Err(source) => {
                publisher.flush().await?;
                return Err(CliError::Io {
                    context: format!("cannot read stdin line {number}"),
                    source,
                });
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        total += 1;
        let parsed = serde_json::from_str::<NewEvent>(&line)
            .map_err(|e| json_line_error(&e))
            .and_then(NewEvent::into_event);
        match parsed {
            Ok(mut event) => {
                next_id += 1;
                event.id = next_id;
                publisher.send(&instance, &event, None).await?;
            }
            Err(message) => {
                bad += 1;
                eprintln!("ipckit-top: line {number}: {message}");
            }
        }
        if lines.is_empty() {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    if bad > 0 {
        return Err(CliError::BadLines { bad, total });
    }
    Ok(ExitCode::SUCCESS)
}

/// `pipe --nats`: as `pipe`, publishing to the stream.
async fn pipe(nats: &NatsOptions, args: PipeArgs) -> Result<ExitCode, CliError> {
    let (publisher, instance) = publisher(nats).await?;
    let sink = StreamSink {
        publisher,
        instance,
        next_id: 0,
    };
    super::pipe_to(sink, args).await
}

/// `pipe` on the stream: ids from 1 for this process, acks settled whenever no line is waiting.
struct StreamSink {
    publisher: Publisher,
    instance: Arc<str>,
    next_id: u64,
}

impl PipeSink for StreamSink {
    async fn publish_one(&mut self, mut event: Event) -> Result<(), CliError> {
        self.next_id += 1;
        event.id = self.next_id;
        self.publisher.send(&self.instance, &event, None).await?;
        Ok(())
    }

    async fn publish_lines(
        &mut self,
        resource: &str,
        rx: &mut tokio::sync::mpsc::Receiver<(bool, PipedLine)>,
    ) -> Result<(), CliError> {
        while let Some((is_err, line)) = rx.recv().await {
            self.publish_one(line_event(resource, is_err, &line))
                .await?;
            if rx.is_empty() {
                self.settle().await?;
            }
        }
        self.settle().await
    }

    async fn settle(&mut self) -> Result<(), CliError> {
        self.publisher.flush().await?;
        Ok(())
    }
}

/// `events --nats`.
async fn events(nats: &NatsOptions, args: EventsArgs) -> Result<ExitCode, CliError> {
    let filter = match &args.filter {
        Some(expr) => {
            EventFilter::parse(expr).map_err(|e| CliError::Usage(format!("--filter: {e}")))?
        }
        None => EventFilter::new(),
    };
    let since = bound("--since", args.since.as_deref())?;
    let until = bound("--until", args.until.as_deref())?;
    super::check_bounds(since, until, &args)?;
    let client = connect(nats, None).await?;
    let js = jetstream(client, Duration::from_secs(5));
    let stream = ensure_stream(&js, nats).await?;
    let last = stream
        .get_info()
        .await
        .map_err(|e| crate::nats::NatsError::request(format!("stream {}", nats.stream), e))?
        .state
        .last_sequence;
    let ended = match until {
        Some(Bound::Time(t)) => t <= SystemTime::now(),
        Some(Bound::Id(id)) => id <= last,
        None => false,
    };
    let follow = !(args.no_follow || ended);
    let start = match since {
        Some(Bound::Id(id)) => Start::Sequence(id.max(1)),
        Some(Bound::Time(t)) => Start::Time(t),
        None if follow => Start::New,
        None => Start::All,
    };
    let mut reader = StreamReader::open(stream, nats.mapping(), filter, start).await?;
    if !follow {
        let end = match until {
            Some(Bound::Id(id)) => id.min(last),
            _ => last,
        };
        reader.stop_at(end);
    }
    let deadline = match until {
        Some(Bound::Time(t)) if follow => Some(
            tokio::time::Instant::now()
                + t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
        ),
        _ => None,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut lost = false;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let item = tokio::select! {
            biased;
            () = sleep_until(deadline) => break,
            _ = check.tick() => {
                reader.check_evicted().await?;
                continue;
            }
            item = reader.next() => item,
        };
        let Some(item) = item else { break };
        match item? {
            NatsItem::Event(event) => {
                let past = match until {
                    Some(Bound::Time(t)) => event.event.timestamp > t,
                    Some(Bound::Id(id)) => event.event.id > id,
                    None => false,
                };
                if past {
                    break;
                }
                if write_event(&mut out, &event, args.format).is_err() {
                    break;
                }
                if matches!(until, Some(Bound::Id(id)) if event.event.id >= id) {
                    break;
                }
            }
            NatsItem::Lost(loss) => {
                let _ = out.flush();
                lost = true;
                eprintln!("ipckit-top: {loss}");
                if matches!((until, loss.last_id), (Some(Bound::Id(id)), Some(last)) if last >= id)
                {
                    break;
                }
            }
            NatsItem::OriginLost { origin, loss } => {
                let _ = out.flush();
                lost = true;
                eprintln!("ipckit-top: {}", origin_loss(&origin, &loss));
            }
        }
    }
    let _ = out.flush();
    Ok(exit_status(lost))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `12 events of origin render-01 lost before they reached NATS (its #5 to #16, no longer in
/// history)`.
fn origin_loss(origin: &str, loss: &crate::event_stream::Loss) -> String {
    let count = match loss.count {
        Some(1) => "1 event".to_owned(),
        Some(n) => format!("{n} events"),
        None => "events".to_owned(),
    };
    let ids = match (loss.first_id, loss.last_id) {
        (Some(a), Some(b)) if a == b => format!("its #{a}, "),
        (Some(a), Some(b)) => format!("its #{a} to #{b}, "),
        (Some(a), None) => format!("from its #{a}, "),
        _ => String::new(),
    };
    format!(
        "{count} of origin {origin} lost before they reached NATS ({ids}{})",
        loss.reason.describe()
    )
}

/// One event: text (`TIME #SEQ ORIGIN TYPE RESOURCE DATA`) or JSON (the event, with `origin` and
/// `origin_id` added).
fn write_event(out: &mut impl Write, event: &NatsEvent, format: Format) -> std::io::Result<()> {
    let e = &event.event;
    match format {
        Format::Json => {
            // The event as the socket prints it, then its origin.
            let json = serde_json::to_string(&**e).map_err(std::io::Error::from)?;
            let body = json.strip_suffix('}').unwrap_or(&json);
            let origin = serde_json::to_string(&*event.origin).map_err(std::io::Error::from)?;
            let origin_id = event
                .origin_id
                .map_or_else(|| "null".to_owned(), |id| id.to_string());
            writeln!(
                out,
                "{body},\"origin\":{origin},\"origin_id\":{origin_id}}}"
            )
        }
        Format::Text => {
            let time: chrono::DateTime<chrono::Utc> = e.timestamp.into();
            let data = e.data.to_string();
            let (space, data) = if data == "null" {
                ("", "")
            } else {
                (" ", data.as_str())
            };
            writeln!(
                out,
                "{} #{} {} {} {}{space}{data}",
                time.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                e.id,
                event.origin,
                e.event_type,
                e.resource_id.as_deref().unwrap_or("-"),
            )
        }
    }
}

/// `bridge`: until SIGINT or SIGTERM.
async fn bridge(
    nats: &NatsOptions,
    socket: PathBuf,
    args: BridgeArgs,
) -> Result<ExitCode, CliError> {
    let filter = match &args.filter {
        Some(expr) => {
            EventFilter::parse(expr).map_err(|e| CliError::Usage(format!("--filter: {e}")))?
        }
        None => EventFilter::new(),
    };
    let origin = args.origin.unwrap_or_else(host_name);
    if origin.trim().is_empty() {
        return Err(CliError::Usage("--origin must not be empty".into()));
    }
    if args.window == 0 {
        return Err(CliError::Usage("--window must be at least 1".into()));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::transport::shutdown_signal().await;
            stop.cancel();
        })
    };
    eprintln!(
        "ipckit-top: bridge: {} -> {} (Ctrl-C to stop)",
        socket.display(),
        nats.label()
    );
    let summary = bridge::run(
        BridgeOptions {
            socket,
            nats: nats.clone(),
            origin,
            filter,
            window: args.window,
        },
        stop,
        |line| eprintln!("ipckit-top: bridge: {line}"),
    )
    .await;
    signals.abort();
    let summary = summary?;
    eprintln!(
        "ipckit-top: bridge: stopped; {} events acknowledged by NATS ({} it had already), {} lost",
        summary.forwarded, summary.duplicates, summary.lost
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes("500M"), Ok(500_000_000));
        assert_eq!(bytes("2GiB"), Ok(2 << 30));
        assert_eq!(bytes("1024"), Ok(1024));
        assert_eq!(bytes("1 kb"), Ok(1000));
        assert!(bytes("0").is_err());
        assert!(bytes("x").is_err());
        assert!(bytes("5Q").is_err());
        assert!(bytes("99999999999TiB").is_err());
    }

    #[test]
    fn origin_losses_name_the_origin_and_its_ids() {
        let loss = crate::event_stream::Loss {
            count: Some(12),
            first_id: Some(5),
            last_id: Some(16),
            reason: crate::event_stream::LossReason::HistoryEvicted,
        };
        assert_eq!(
            origin_loss("render-01", &loss),
            "12 events of origin render-01 lost before they reached NATS (its #5 to #16, no \
             longer in history)"
        );
    }
}
