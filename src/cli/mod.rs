//! The `ipckit-top` command line: argument parsing (clap) and one function per subcommand.
//!
//! `src/bin/ipckit-top.rs` only calls [`main`]. Every failure is one line on stderr and a non-zero
//! exit status; `pipe` exits with its child's status. With `--nats URL` the monitor and the client
//! subcommands run on a NATS JetStream stream instead of the socket (`nats.rs`).

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
pub use nats::{BridgeArgs, NatsArgs};

use crate::event_stream::{parse_bound, Bound};
use crate::transport::frame::NewEvent;
use crate::transport::{
    default_socket_path, Client, ClientError, RemoteRef, ServeError, Server, ServerConfig,
};
use crate::{Event, EventBus, EventBusConfig, EventFilter, EventId, EventRef, Replay};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Watch and feed an ipckit event bus.
#[derive(Debug, Parser)]
#[command(name = "ipckit-top", version, about, long_about = None)]
pub struct Cli {
    /// The bus socket [default: $XDG_RUNTIME_DIR/ipckit/default.sock]
    #[arg(long, global = true, env = "IPCKIT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Monitor: show only events matching this filter expression (e.g. `task.* !task.progress`)
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Monitor: add a built-in workload (render jobs, progress, logs, an occasional failure)
    #[arg(long)]
    pub demo: bool,
    /// Monitor: events kept for scrolling, filtering and scrubbing (and by a hosted bus for replay)
    /// [default: 50000; with --open, 10000000]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub history: Option<usize>,
    /// Monitor: show a recording instead of a bus, read-only: an NDJSON file as `events --format json`
    /// prints it and `w` writes it (gzip or zstd compressed too), `-` for stdin, or a data dir
    #[arg(long, value_name = "PATH", conflicts_with = "demo")]
    pub open: Option<PathBuf>,
    /// Where NATS is, for the monitor and the client subcommands, and `bridge`
    #[cfg(feature = "nats")]
    #[command(flatten)]
    pub nats: NatsArgs,
    /// What to do; without a subcommand, run the monitor
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A count of at least 1 (the monitor cannot show events it does not keep).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("the monitor keeps at least 1 event".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a bus on the socket in the foreground until Ctrl-C or SIGTERM
    Serve(ServeArgs),
    /// Publish one event, or one JSON event per line of stdin
    Publish(PublishArgs),
    /// Publish each line of stdin, or of a command's stdout and stderr, as log events (the command's
    /// output is passed through unchanged)
    Pipe(PipeArgs),
    /// Publish an MCP progress notification
    Progress(ProgressArgs),
    /// Print events as they happen (like `docker events`); exits with status 3 if any were lost
    #[command(
        after_help = "Exit status: 0 when every event asked for was printed; 3 when some were \
lost (a line on stderr says how many and their ids: the bus no longer kept them); 1 on an error."
    )]
    Events(EventsArgs),
    /// Run an MCP stdio server behind a transparent proxy that publishes its calls, progress and logs
    #[cfg(unix)]
    Mcp(McpArgs),
    /// Forward every event of the bus at --socket to the NATS stream (--nats), resuming after either
    /// side restarts with no duplicate and no silent gap
    #[cfg(feature = "nats")]
    #[command(
        after_help = "Where it got to is kept in the KV bucket ipckit-bridges (key STREAM.ORIGIN). \
Events the bus no longer holds when the bridge resumes are reported on stderr with their count, and \
in the Ipckit-Lost header of the next event forwarded."
    )]
    Bridge(BridgeArgs),
}

/// `mcp` arguments.
#[cfg(unix)]
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Resource id of the published events [default: the server command's file name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Relay requests untouched: add no progress token to tool calls that have none
    #[arg(long)]
    pub no_inject: bool,
    /// The server command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "SERVER_CMD")]
    pub command: Vec<String>,
}

/// `serve` arguments.
#[derive(Debug, Args)]
#[command(after_long_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// Events kept in memory for replay and history queries (with --data-dir: the newest ones; older
    /// ones are read from the data dir)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY)]
    pub history: usize,
    /// Bytes history may hold in memory, whichever of --history and this is reached first (10G,
    /// 512M, 64K: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub history_bytes: u64,
    /// Keep every event in DIR (created 0700 if absent) across restarts: ids go on, and history,
    /// replay and `events --since` reach everything on disk
    #[cfg(unix)]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: delete the oldest segments (whole files) while the data dir holds more than
    /// SIZE (10G, 512M) [default: no limit]
    #[cfg(unix)]
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "data_dir")]
    pub retain: Option<u64>,
    /// With --data-dir: delete the segments whose events are all older than DURATION (7d, 12h, 90m)
    /// [default: no limit]
    #[cfg(unix)]
    #[arg(long, value_name = "DURATION", value_parser = parse_age, requires = "data_dir")]
    pub retain_age: Option<Duration>,
    /// With --data-dir: when appended events are forced to the disk: `always`, `interval` (every
    /// second), `interval=DURATION`, or `never`
    ///
    /// Every mode keeps each event a publisher got an id for through a crash or `kill -9` of the
    /// server (it is in the kernel's page cache before the id is returned). A power loss or kernel
    /// crash keeps: with `always`, every event acknowledged (a disk flush per event: slow);
    /// with `interval` (the default), all but about the last second's; with `never`, what the
    /// kernel had written back (typically all but the last 30 seconds).
    #[cfg(unix)]
    #[arg(long, value_name = "WHEN", default_value = "interval", value_parser = parse_fsync, requires = "data_dir")]
    pub fsync: crate::store::disk::FsyncPolicy,
    /// With --data-dir: start a new segment file every SIZE (4K to 4G)
    #[cfg(unix)]
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size, requires = "data_dir")]
    pub segment_size: u64,
    /// Add the built-in demo workload
    #[arg(long)]
    pub demo: bool,
}

/// The end of `serve --help`.
const SERVE_AFTER_HELP: &str = "\
With --data-dir, each event is appended to a segment file of DIR (records framed with their length \
and a CRC-32C) before its id is returned. On start the server checks every record, cuts off a torn \
last record, keeps everything before a damaged one (the damaged segment is kept as found and \
reported), goes on with ids after the last one stored, loads the newest --history events into \
memory, and prints one line saying what it found. It refuses, in one line and without touching \
it, a DIR another server holds, a DIR of another format version, one not owned by you or writable \
by others, and a non-empty directory that is not a data dir. When the disk is full a publish gets \
an error and nothing stored before is lost; publishing works again once there is space. Retention \
runs at start, whenever a segment fills, and every second.";

/// A size such as `10G`, `512M`, `64K`, `1.5G` or `4096` (bytes): K, M, G, T are powers of 1024; a
/// trailing `B` or `iB` is accepted.
///
/// # Errors
///
/// A sentence saying what was expected.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("{text:?} is not a size: expected a number of bytes, or one with K, M, G or T (10G, 512M)")
    };
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, shift) = match lower.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(bad()),
            };
            (&lower[..at], shift)
        }
        _ => (lower, 0),
    };
    let number = number.trim();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * (1u64 << shift) as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// A duration of at least a second, such as `7d`, `12h`, `90m`, `1h 30m`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let age = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration ({e}): expected something like 7d, 12h or 90m")
    })?;
    if age < Duration::from_secs(1) {
        return Err(format!("{text:?} is less than a second"));
    }
    Ok(age)
}

#[cfg(unix)]
fn parse_fsync(text: &str) -> Result<crate::store::disk::FsyncPolicy, String> {
    text.parse()
        .map_err(|e: crate::store::disk::DiskError| match e {
            crate::store::disk::DiskError::Options(message) => message,
            other => other.to_string(),
        })
}

/// `publish` arguments.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Event type, e.g. `task.started`
    #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
    pub event_type: Option<String>,
    /// Resource id (task, job, token)
    #[arg(long, value_name = "ID", conflicts_with = "stdin")]
    pub resource: Option<String>,
    /// Event data as JSON [default: {}]
    #[arg(long, value_name = "JSON", conflicts_with = "stdin")]
    pub data: Option<String>,
    /// Read one JSON event per line from stdin: {"event_type":..,"resource_id":..,"data":..}
    #[arg(long)]
    pub stdin: bool,
}

/// `pipe` arguments.
#[derive(Debug, Args)]
pub struct PipeArgs {
    /// Resource id of the log events and of the task
    #[arg(long, value_name = "ID")]
    pub resource: String,
    /// Command to run; its stdout and stderr are passed through byte for byte, and each line (the last
    /// one too, newline or not) is published; lines over 64 KiB are published cut, marked "truncated"
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `progress` arguments.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// Progress token (the resource id)
    pub token: String,
    /// Work done so far
    pub progress: f64,
    /// Total work, if known
    #[arg(long, value_name = "N")]
    pub total: Option<f64>,
    /// Status message
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
}

/// Output format of `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One readable line per event
    Text,
    /// One JSON event per line
    Json,
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter expression (`task.* !task.progress res:render-*`)
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Start with kept events from this point: RFC 3339, a duration ago (10m), or id:N
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Stop at this point: RFC 3339, a duration ago, or id:N
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Print what history holds and exit
    #[arg(long)]
    pub no_follow: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Options of the monitor, from the top-level arguments.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// The bus socket.
    pub socket: PathBuf,
    /// Initial filter expression.
    pub filter: Option<String>,
    /// Run the demo workload.
    pub demo: bool,
    /// History size of a hosted bus.
    pub history: usize,
    /// A recording to show instead of a bus.
    pub open: Option<PathBuf>,
}

/// Events a recording opened with `--open` keeps without `--history`: ten million, about 550 MB of
/// memory for events of a render farm's size.
pub const RECORDING_HISTORY: usize = 10_000_000;

/// A failed command, as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Talking to the bus failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Some input lines were refused (the others were published).
    #[error("{bad} of {total} lines were not published")]
    BadLines {
        /// Lines refused.
        bad: usize,
        /// Lines read.
        total: usize,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The monitor failed.
    #[error(transparent)]
    Monitor(#[from] crate::top::TopError),
    /// The MCP proxy could not run.
    #[cfg(unix)]
    #[error(transparent)]
    Mcp(#[from] crate::mcp::McpError),
    /// NATS failed.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// The data dir could not be used.
    #[cfg(unix)]
    #[error(transparent)]
    Disk(#[from] crate::store::disk::DiskError),
}

/// [`crate::transport::runtime`], its failure as a [`CliError`].
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, CliError> {
    crate::transport::runtime(workers).map_err(|source| CliError::Io {
        context: "cannot start the async runtime".into(),
        source,
    })
}

/// Parses the arguments, runs the command, prints an error as one line; the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ipckit-top: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
///
/// The command's failure.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let socket = cli.socket.clone().unwrap_or_else(default_socket_path);
    #[cfg(feature = "nats")]
    let nats = cli.nats.options();
    let history = cli.history.unwrap_or(if cli.open.is_some() {
        RECORDING_HISTORY
    } else {
        DEFAULT_HISTORY
    });
    // A recording is shown whatever --nats says.
    #[cfg(feature = "nats")]
    if let (None, None, Some(nats)) = (&cli.command, &cli.open, &nats) {
        return run_monitor_nats(
            nats.clone(),
            MonitorOptions {
                socket,
                filter: cli.filter,
                demo: cli.demo,
                history,
                open: None,
            },
        );
    }
    let Some(command) = cli.command else {
        return run_monitor(MonitorOptions {
            socket,
            filter: cli.filter,
            demo: cli.demo,
            history,
            open: cli.open,
        });
    };
    #[cfg(not(feature = "nats"))]
    let multi = matches!(command, Command::Serve(_));
    #[cfg(feature = "nats")]
    let multi = matches!(command, Command::Serve(_) | Command::Bridge(_));
    let runtime = runtime(if multi { 2 } else { 1 })?;
    runtime.block_on(async move {
        #[cfg(feature = "nats")]
        let command = match nats::run_command(nats, socket.clone(), command).await {
            Ok(done) => return done,
            Err(command) => command,
        };
        match command {
            Command::Serve(args) => serve(socket, args).await,
            Command::Publish(args) => publish(socket, args).await,
            Command::Pipe(args) => pipe(socket, args).await,
            Command::Progress(args) => progress(socket, args).await,
            Command::Events(args) => events(socket, args).await,
            #[cfg(unix)]
            Command::Mcp(args) => Ok(crate::mcp::run(crate::mcp::McpOptions {
                destination: crate::mcp::Destination::Socket(socket),
                name: args.name,
                inject: !args.no_inject,
                command: args.command,
            })
            .await?),
            // Taken by the NATS path above, which refuses it without --nats.
            #[cfg(feature = "nats")]
            Command::Bridge(_) => Err(CliError::Usage(
                "bridge needs --nats URL (or IPCKIT_NATS)".into(),
            )),
        }
    })
}

/// The full-screen monitor on a NATS stream ([`crate::top::run_on_nats`]).
///
/// # Errors
///
/// The monitor's failure (a bad filter, NATS refusing the stream or the credentials, no terminal).
#[cfg(feature = "nats")]
pub fn run_monitor_nats(
    nats: crate::nats::NatsOptions,
    options: MonitorOptions,
) -> Result<ExitCode, CliError> {
    let runtime = runtime(2)?;
    let top = crate::top::TopOptions {
        socket_label: nats.label(),
        filter: options.filter,
        history: options.history,
        ..Default::default()
    };
    runtime.block_on(crate::top::run_on_nats(nats, top, options.demo))?;
    Ok(ExitCode::SUCCESS)
}

/// The full-screen monitor: attaches to the bus at the socket, or hosts one there
/// ([`crate::top::run_at_socket`]); with `--open`, shows a recording ([`crate::top::run_recording`]).
///
/// # Errors
///
/// The monitor's failure (a bad filter, a socket that cannot be served, no terminal).
pub fn run_monitor(options: MonitorOptions) -> Result<ExitCode, CliError> {
    let runtime = runtime(2)?;
    let top = crate::top::TopOptions {
        socket_label: crate::top::socket_label(&options.socket),
        filter: options.filter,
        history: options.history,
        ..Default::default()
    };
    match &options.open {
        Some(path) => runtime.block_on(crate::top::run_recording(path, top))?,
        None => runtime.block_on(crate::top::run_at_socket(options.socket, top, options.demo))?,
    }
    Ok(ExitCode::SUCCESS)
}

pub use crate::transport::DEFAULT_HISTORY;

/// Events queued per subscriber of `serve`'s bus (one pointer each) before the oldest are dropped:
/// enough for bursts of batched publishes while a remote subscriber's socket drains.
pub const SERVE_SUBSCRIBER_BUFFER: usize = 16 * 1024;

async fn serve(socket: PathBuf, args: ServeArgs) -> Result<ExitCode, CliError> {
    let config = EventBusConfig {
        history_size: args.history,
        history_bytes: usize::try_from(args.history_bytes).unwrap_or(usize::MAX),
        subscriber_buffer: SERVE_SUBSCRIBER_BUFFER,
        ..Default::default()
    };
    #[cfg(unix)]
    let bus = match &args.data_dir {
        Some(dir) => open_data_dir(dir, config, &args)?,
        None => EventBus::new(config),
    };
    #[cfg(not(unix))]
    let bus = EventBus::new(config);
    let server = Server::bind(bus.clone(), ServerConfig::new(&socket))?;
    eprintln!(
        "ipckit-top: serving a bus at {} (Ctrl-C to stop)",
        socket.display()
    );
    #[cfg(unix)]
    let maintenance = bus
        .has_data_dir()
        .then(|| tokio::spawn(maintain_disk(bus.clone())));
    let demo = args.demo.then(|| crate::demo::spawn(bus.publisher()));
    server.run().await?;
    drop(demo);
    #[cfg(unix)]
    if let Some(task) = maintenance {
        task.abort();
        let _ = task.await;
        if let Some(report) = bus.maintain_disk() {
            say_disk_report(&report);
        }
        if let Err(e) = bus.sync_disk() {
            eprintln!("ipckit-top: data dir: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `serve`'s bus on its data dir and says in one line what was found there.
#[cfg(unix)]
fn open_data_dir(
    dir: &std::path::Path,
    config: EventBusConfig,
    args: &ServeArgs,
) -> Result<EventBus, CliError> {
    let options = crate::store::disk::DiskOptions {
        segment_bytes: args.segment_size,
        fsync: args.fsync,
        retain_bytes: args.retain,
        retain_age: args.retain_age,
        ..Default::default()
    };
    let (bus, recovery) = EventBus::open(config, dir, options)?;
    let stats = bus.stats();
    eprintln!(
        "ipckit-top: data dir {}: {recovery}; {} events loaded into memory; ids go on from {} (fsync {})",
        dir.display(),
        stats.history_len,
        stats.published + 1,
        args.fsync
    );
    Ok(bus)
}

/// Every second: applies the data dir's retention and says on stderr what it deleted and which
/// errors happened.
#[cfg(unix)]
async fn maintain_disk(bus: EventBus) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let bus = bus.clone();
        // Retention deletes files under the bus lock: off the runtime's workers.
        match tokio::task::spawn_blocking(move || bus.maintain_disk()).await {
            Ok(Some(report)) => say_disk_report(&report),
            Ok(None) => return,
            Err(_) => {}
        }
    }
}

#[cfg(unix)]
fn say_disk_report(report: &crate::event_stream::DiskReport) {
    if !report.retained.is_empty() {
        eprintln!("ipckit-top: data dir: {}", report.retained);
    }
    if report.failed_appends > 0 {
        eprintln!(
            "ipckit-top: data dir: {} events could not be written to disk (refused to their publisher, or kept in memory only){}",
            report.failed_appends,
            report
                .last_append_error
                .as_deref()
                .map_or(String::new(), |e| format!("; last: {e}"))
        );
    }
    for error in &report.errors {
        eprintln!("ipckit-top: data dir: {error}");
    }
}

async fn publish(socket: PathBuf, args: PublishArgs) -> Result<ExitCode, CliError> {
    if args.stdin {
        return publish_stdin(socket).await;
    }
    let event = publish_event(args)?;
    let client = Client::connect(&socket).await?;
    let id = client.publish(&event).await?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The event `publish TYPE --resource ID --data JSON` asks for.
fn publish_event(args: PublishArgs) -> Result<Event, CliError> {
    let event_type = args
        .event_type
        .ok_or_else(|| CliError::Usage("an event TYPE or --stdin is required".into()))?;
    let data = match args.data {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| CliError::Usage(format!("--data is not valid JSON: {e}")))?,
        None => serde_json::json!({}),
    };
    let new = NewEvent {
        id: None,
        timestamp: None,
        event_type,
        resource_id: args.resource,
        data,
    };
    new.into_event().map_err(CliError::Usage)
}

/// Lines from stdin on a thread of their own (stdin reads block), as (line number, text). A line
/// that is not UTF-8 comes as an `InvalidData` error and reading goes on; other read errors end the
/// stream.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<(usize, std::io::Result<String>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let stdin = std::io::stdin();
        for (index, line) in stdin.lock().split(b'\n').enumerate() {
            let (line, stop) = match line {
                Ok(bytes) => (
                    String::from_utf8(bytes).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
                        )
                    }),
                    false,
                ),
                Err(e) => (Err(e), true),
            };
            if tx.blocking_send((index + 1, line)).is_err() || stop {
                break;
            }
        }
    });
    rx
}

async fn publish_stdin(socket: PathBuf) -> Result<ExitCode, CliError> {
    let client = Client::connect(&socket).await?;
    let mut lines = stdin_lines();
    let (mut total, mut bad) = (0usize, 0usize);
    let mut batch: Vec<Event> = Vec::new();
    while let Some(first) = lines.recv().await {
        let mut next = Some(first);
        while let Some((number, line)) = next.take() {
            let line = match line {
                Ok(line) => line,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    total += 1;
                    bad += 1;
                    eprintln!("ipckit-top: line {number}: {e}");
                    String::new()
                }
                Err(source) => {
                    return Err(CliError::Io {
                        context: format!("cannot read stdin line {number}"),
                        source,
                    })
                }
            };
            if !line.trim().is_empty() {
                total += 1;
                let parsed = serde_json::from_str::<NewEvent>(&line)
                    .map_err(|e| json_line_error(&e))
                    .and_then(NewEvent::into_event);
                match parsed {
                    Ok(event) => batch.push(event),
                    Err(message) => {
                        bad += 1;
                        eprintln!("ipckit-top: line {number}: {message}");
                    }
                }
            }
            if batch.len() < 256 {
                next = lines.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            client.publish_batch(&batch).await?;
            batch.clear();
        }
    }
    if bad > 0 {
        return Err(CliError::BadLines { bad, total });
    }
    Ok(ExitCode::SUCCESS)
}

/// What is wrong with one line of `publish --stdin`, without serde's "line 1" (each is one line).
fn json_line_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON: {what} (column {})", err.column())
        }
        serde_json::error::Category::Data => format!("not an event: {what}"),
        serde_json::error::Category::Io => what.to_owned(),
    }
}

/// The most bytes of one line `pipe` publishes. A longer line is passed through whole but published
/// cut to this, its event marked `"truncated": true` with the line's length in `"bytes"` and a note at the
/// end of its message, so one event stays well under the wire's frame limit.
pub const PIPE_LINE_LIMIT: usize = 64 * 1024;

/// Where `pipe` publishes: the bus at the socket, or (with `--nats`) a stream.
trait PipeSink {
    /// Publishes one event.
    async fn publish_one(&mut self, event: Event) -> Result<(), CliError>;
    /// Publishes the lines from `rx`, in order, until it closes.
    async fn publish_lines(
        &mut self,
        resource: &str,
        rx: &mut tokio::sync::mpsc::Receiver<(bool, PipedLine)>,
    ) -> Result<(), CliError>;
    /// Waits until everything sent is stored.
    async fn settle(&mut self) -> Result<(), CliError>;
}

/// `pipe` on the socket.
struct SocketSink(Client);

impl PipeSink for SocketSink {
    async fn publish_one(&mut self, event: Event) -> Result<(), CliError> {
        self.0.publish(&event).await?;
        Ok(())
    }

    async fn publish_lines(
        &mut self,
        resource: &str,
        rx: &mut tokio::sync::mpsc::Receiver<(bool, PipedLine)>,
    ) -> Result<(), CliError> {
        publish_lines(&self.0, resource, rx).await
    }

    async fn settle(&mut self) -> Result<(), CliError> {
        Ok(())
    }
}

/// `pipe`: runs the command (or reads stdin), passes the child's stdout and stderr through byte for byte
/// to its own, and publishes each line as a `log.stdout` / `log.stderr` event.
async fn pipe(socket: PathBuf, args: PipeArgs) -> Result<ExitCode, CliError> {
    let client = Client::connect(&socket).await?;
    pipe_to(SocketSink(client), args).await
}

/// `pipe` to `sink`, the socket's or the stream's.
async fn pipe_to(mut sink: impl PipeSink, args: PipeArgs) -> Result<ExitCode, CliError> {
    let resource = args.resource;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, PipedLine)>(1024);
    let Some((program, rest)) = args.command.split_first() else {
        // Stdin reads block: on a thread of their own.
        let reader = std::thread::spawn(move || read_stdin_lines(&tx));
        sink.publish_lines(&resource, &mut rx).await?;
        sink.settle().await?;
        return match reader.join() {
            Ok(Ok(())) => Ok(ExitCode::SUCCESS),
            Ok(Err(source)) => Err(CliError::Io {
                context: "cannot read stdin".into(),
                source,
            }),
            Err(_) => Err(CliError::Usage("the stdin reader failed".into())),
        };
    };
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CliError::Io {
            context: format!("cannot run {program}"),
            source,
        })?;
    sink.publish_one(Event::with_resource(
        crate::event_types::TASK_STARTED,
        &resource,
        serde_json::json!({ "command": args.command, "pid": child.id() }),
    ))
    .await?;
    let out = tokio::spawn(relay(
        child.stdout.take(),
        tokio::io::stdout(),
        false,
        tx.clone(),
    ));
    let err = tokio::spawn(relay(child.stderr.take(), tokio::io::stderr(), true, tx));
    sink.publish_lines(&resource, &mut rx).await?;
    for (relay, name) in [(out, "stdout"), (err, "stderr")] {
        match relay.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(CliError::Io {
                    context: format!("cannot read {program}'s {name}"),
                    source,
                })
            }
            Err(join) => return Err(CliError::Usage(format!("reading {name} failed: {join}"))),
        }
    }
    let status = child.wait().await.map_err(|source| CliError::Io {
        context: format!("cannot wait for {program}"),
        source,
    })?;
    let (event, code) = exit_event(&resource, status);
    sink.publish_one(event).await?;
    sink.settle().await?;
    Ok(ExitCode::from(code))
}

/// Copies `stream` to `out` as it comes, byte for byte, and sends its lines (tagged `is_err`) to `tx`.
/// When `out` fails (nobody reads it any more), the stream is still read to its end and published.
async fn relay<R, W>(
    stream: Option<R>,
    mut out: W,
    is_err: bool,
    tx: tokio::sync::mpsc::Sender<(bool, PipedLine)>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut stream) = stream else {
        return Ok(());
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut splitter = LineSplitter::new(PIPE_LINE_LIMIT);
    let mut lines = Vec::new();
    let mut passing = true;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if passing && (out.write_all(chunk).await.is_err() || out.flush().await.is_err()) {
            passing = false;
        }
        splitter.push(chunk, &mut lines);
        for line in lines.drain(..) {
            if tx.send((is_err, line)).await.is_err() {
                return Ok(());
            }
        }
    }
    if let Some(line) = splitter.finish() {
        let _ = tx.send((is_err, line)).await;
    }
    Ok(())
}

/// `pipe` without a command: the lines of stdin, to `tx`.
fn read_stdin_lines(tx: &tokio::sync::mpsc::Sender<(bool, PipedLine)>) -> std::io::Result<()> {
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut splitter = LineSplitter::new(PIPE_LINE_LIMIT);
    let mut lines = Vec::new();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.push(&buf[..n], &mut lines);
        for line in lines.drain(..) {
            if tx.blocking_send((false, line)).is_err() {
                return Ok(());
            }
        }
    }
    if let Some(line) = splitter.finish() {
        let _ = tx.blocking_send((false, line));
    }
    Ok(())
}

/// Publishes the lines from `rx` in order, in batches that stay well under a frame.
async fn publish_lines(
    client: &Client,
    resource: &str,
    rx: &mut tokio::sync::mpsc::Receiver<(bool, PipedLine)>,
) -> Result<(), CliError> {
    // A line's JSON is at most 6 bytes per byte kept (`\u0001`), plus the event around it.
    let cost = |line: &PipedLine| line.kept.len() * 6 + 256;
    let budget = crate::transport::frame::DEFAULT_MAX_FRAME / 2;
    let mut batch: Vec<Event> = Vec::new();
    while let Some((is_err, line)) = rx.recv().await {
        let mut used = cost(&line);
        batch.push(line_event(resource, is_err, &line));
        while batch.len() < 256 {
            let Ok((is_err, line)) = rx.try_recv() else {
                break;
            };
            if used + cost(&line) > budget {
                client.publish_batch(&batch).await?;
                batch.clear();
                used = 0;
            }
            used += cost(&line);
            batch.push(line_event(resource, is_err, &line));
        }
        client.publish_batch(&batch).await?;
        batch.clear();
    }
    Ok(())
}

/// One line of a piped stream: its first bytes (at most the splitter's limit) and its length, both
/// without the line end (`\n`, or `\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PipedLine {
    kept: Vec<u8>,
    len: usize,
}

/// Cuts a byte stream into lines at `\n` (a `\r` before it is dropped, and a last line without a
/// newline is a line too), keeping at most `limit` bytes of each, so memory stays bounded whatever the
/// stream.
#[derive(Debug)]
struct LineSplitter {
    kept: Vec<u8>,
    len: usize,
    ends_cr: bool,
    limit: usize,
}

impl LineSplitter {
    fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            len: 0,
            ends_cr: false,
            limit,
        }
    }

    /// Adds `bytes`; the lines they complete go to `lines`.
    fn push(&mut self, mut bytes: &[u8], lines: &mut Vec<PipedLine>) {
        while !bytes.is_empty() {
            let (part, rest, ended) = match memchr::memchr(b'\n', bytes) {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = self.limit.saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&part[..part.len().min(room)]);
            self.len += part.len();
            if let Some(&last) = part.last() {
                self.ends_cr = last == b'\r';
            }
            if ended {
                lines.push(self.take());
            }
            bytes = rest;
        }
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(&mut self) -> Option<PipedLine> {
        (self.len > 0).then(|| self.take())
    }

    fn take(&mut self) -> PipedLine {
        let len = self.len - usize::from(self.ends_cr);
        let mut kept = std::mem::take(&mut self.kept);
        kept.truncate(len);
        self.len = 0;
        self.ends_cr = false;
        PipedLine { kept, len }
    }
}

/// The event for one piped line: its text (invalid UTF-8 replaced by `�`), cut and marked when the
/// line was longer than what was kept of it.
fn line_event(resource: &str, is_err: bool, line: &PipedLine) -> Event {
    let level = if is_err { "stderr" } else { "stdout" };
    if line.kept.len() == line.len {
        return Event::log(resource, level, &String::from_utf8_lossy(&line.kept));
    }
    let kept = complete_utf8(&line.kept);
    let event_type = if is_err {
        crate::event_types::LOG_STDERR
    } else {
        crate::event_types::LOG_STDOUT
    };
    let message = format!(
        "{}… [line of {} bytes, first {} published]",
        String::from_utf8_lossy(kept),
        line.len,
        kept.len()
    );
    Event::with_resource(
        event_type,
        resource,
        serde_json::json!({
            "level": level,
            "message": message,
            "truncated": true,
            "bytes": line.len,
        }),
    )
}

/// `bytes` without a UTF-8 sequence cut short at its end.
fn complete_utf8(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        match bytes[start] {
            0x00..=0x7f => return bytes,
            0x80..=0xbf => continue,
            _ => {
                return match std::str::from_utf8(&bytes[start..]) {
                    Err(e) if e.error_len().is_none() => &bytes[..start],
                    _ => bytes,
                }
            }
        }
    }
    bytes
}

/// The task event for a child's exit, and the status to exit with.
fn exit_event(resource: &str, status: std::process::ExitStatus) -> (Event, u8) {
    if let Some(code) = status.code() {
        if code == 0 {
            let data = serde_json::json!({ "result": { "exit_code": 0 } });
            return (
                Event::with_resource(crate::event_types::TASK_COMPLETED, resource, data),
                0,
            );
        }
        let data =
            serde_json::json!({ "error": format!("exited with status {code}"), "exit_code": code });
        return (
            Event::with_resource(crate::event_types::TASK_FAILED, resource, data),
            u8::try_from(code & 0xff).unwrap_or(1).max(1),
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let data = serde_json::json!({ "error": format!("killed by signal {signal}"), "signal": signal });
            return (
                Event::with_resource(crate::event_types::TASK_FAILED, resource, data),
                u8::try_from((128 + signal) & 0xff).unwrap_or(1),
            );
        }
    }
    let data = serde_json::json!({ "error": "exited abnormally" });
    (
        Event::with_resource(crate::event_types::TASK_FAILED, resource, data),
        1,
    )
}

async fn progress(socket: PathBuf, args: ProgressArgs) -> Result<ExitCode, CliError> {
    let event = progress_event(&args)?;
    let client = Client::connect(&socket).await?;
    let id = client.publish(&event).await?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The MCP progress event `progress` asks for, its numbers checked.
fn progress_event(args: &ProgressArgs) -> Result<Event, CliError> {
    if !args.progress.is_finite() || args.progress < 0.0 {
        return Err(CliError::Usage(format!(
            "PROGRESS must be a finite number of at least 0, got {}",
            args.progress
        )));
    }
    if let Some(total) = args.total {
        if !total.is_finite() || total < 0.0 {
            return Err(CliError::Usage(format!(
                "--total must be a finite number of at least 0, got {total}"
            )));
        }
    }
    Ok(Event::mcp_progress(
        &args.token,
        args.progress,
        args.total,
        args.message.as_deref(),
    ))
}

fn bound(flag: &str, value: Option<&str>) -> Result<Option<Bound>, CliError> {
    value
        .map(|v| parse_bound(v).map_err(|e| CliError::Usage(format!("{flag} {v:?}: {e}"))))
        .transpose()
}

/// Refuses an `--until` before `--since`.
fn check_bounds(
    since: Option<Bound>,
    until: Option<Bound>,
    args: &EventsArgs,
) -> Result<(), CliError> {
    let backwards = match (since, until) {
        (Some(Bound::Time(s)), Some(Bound::Time(u))) => u < s,
        (Some(Bound::Id(s)), Some(Bound::Id(u))) => u < s,
        _ => false,
    };
    if backwards {
        return Err(CliError::Usage(format!(
            "--until {:?} is before --since {:?}: no event can match",
            args.until.as_deref().unwrap_or_default(),
            args.since.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// The exit status of `events` when events it should have printed were lost.
pub const LOST_EXIT: u8 = 3;

async fn events(socket: PathBuf, args: EventsArgs) -> Result<ExitCode, CliError> {
    let mut filter = match &args.filter {
        Some(expr) => {
            EventFilter::parse(expr).map_err(|e| CliError::Usage(format!("--filter: {e}")))?
        }
        None => EventFilter::new(),
    };
    let since = bound("--since", args.since.as_deref())?;
    let until = bound("--until", args.until.as_deref())?;
    check_bounds(since, until, &args)?;
    let client = Client::connect(&socket).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let lost = std::cell::Cell::new(false);
    let say = |loss: &crate::event_stream::Loss| {
        lost.set(true);
        eprintln!("ipckit-top: {loss}");
    };
    // An end already reached needs no following: what history holds is the whole answer.
    let ended = match until {
        Some(Bound::Time(t)) => t <= SystemTime::now(),
        Some(Bound::Id(id)) => id <= client.hello().last_id,
        None => false,
    };
    if args.no_follow || ended {
        let exact = filter.is_empty() && !matches!(since, Some(Bound::Time(_)));
        filter = match since {
            Some(Bound::Time(t)) => filter.since(t),
            Some(Bound::Id(id)) => filter.since_id(id),
            None => filter,
        };
        filter = match until {
            Some(Bound::Time(t)) => filter.until(t),
            Some(Bound::Id(id)) => filter.until_id(id),
            None => filter,
        };
        let end = match until {
            Some(Bound::Id(id)) => id.min(client.hello().last_id),
            _ => client.hello().last_id,
        };
        // Paged, so that a long history is never held whole; what it no longer holds is said.
        let mut from = match since {
            Some(Bound::Id(id)) => id.max(1),
            // Everything kept: the first page says where history starts.
            _ => 0,
        };
        const PAGE: usize = 2000;
        let gap = |first: EventId, last: EventId| crate::event_stream::Loss {
            count: Some(last - first + 1),
            first_id: Some(first),
            last_id: Some(last),
            reason: crate::event_stream::LossReason::HistoryEvicted,
        };
        // Without a filter every id up to `end` should come, in order: a jump is a loss too (a
        // damaged range of a data dir, say). The next id expected:
        let consecutive = exact && !matches!(until, Some(Bound::Time(_)));
        let mut expect = 0;
        loop {
            let (page, oldest) = client.history_page(&filter, from.max(1), PAGE).await?;
            let held_from = oldest.unwrap_or(end + 1);
            if from == 0 {
                from = held_from;
            }
            if held_from > from && from <= end {
                let last = (held_from - 1).min(end);
                say(&crate::event_stream::Loss {
                    count: exact.then(|| last - from + 1),
                    first_id: Some(from),
                    last_id: Some(last),
                    reason: crate::event_stream::LossReason::HistoryEvicted,
                });
            }
            expect = expect.max(from).max(held_from);
            for event in &page {
                if consecutive && event.id > expect && expect <= end {
                    say(&gap(expect, (event.id - 1).min(end)));
                }
                expect = expect.max(event.id + 1);
                if !print_event(&mut out, event, args.format) {
                    return Ok(exit_status(lost.get()));
                }
            }
            match page.last() {
                Some(last) if page.len() >= PAGE && last.id < end => from = last.id + 1,
                _ => break,
            }
        }
        if consecutive && expect <= end {
            say(&gap(expect, end));
        }
        return Ok(exit_status(lost.get()));
    }
    let replay = match since {
        Some(Bound::Time(t)) => Replay::FromTime(t),
        Some(Bound::Id(id)) => Replay::FromId(id),
        None => Replay::None,
    };
    // Events up to this one were kept before we came (replayed); later ones are live.
    let live_from = client.hello().last_id;
    let mut sub = client.subscribe(&filter, replay).await?;
    let deadline = match until {
        Some(Bound::Time(t)) => Some(
            tokio::time::Instant::now()
                + t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
        ),
        _ => None,
    };
    // Events are printed as they arrive, read in place (never built into owned events), and
    // flushed once per arrival rather than once per event. A loss is said on stderr where it
    // happened.
    let mut done = false;
    loop {
        let mut print = |item: RemoteRef<'_>| {
            done = match item {
                RemoteRef::Event(event) => {
                    let past = match until {
                        Some(Bound::Time(t)) => event.timestamp > t,
                        Some(Bound::Id(id)) => event.id > id,
                        None => false,
                    };
                    past || write_ref(&mut out, &event, args.format).is_err()
                        // A live shutdown, not one replayed from a server's earlier run.
                        || (event.event_type == crate::event_types::SYSTEM_SHUTDOWN
                            && event.id > live_from)
                        || matches!(until, Some(Bound::Id(id)) if event.id >= id)
                }
                RemoteRef::Lost(loss) => {
                    let _ = out.flush();
                    say(&loss);
                    matches!((until, loss.last_id), (Some(Bound::Id(id)), Some(last)) if last >= id)
                }
            };
            if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let received = match deadline {
            Some(at) => tokio::select! {
                biased;
                received = sub.recv_refs(&mut print) => received,
                () = tokio::time::sleep_until(at) => return Ok(exit_status(lost.get())),
            },
            None => sub.recv_refs(&mut print).await,
        };
        if received.is_none() {
            return Err(CliError::Client(ClientError::Closed));
        }
        if done || out.flush().is_err() {
            return Ok(exit_status(lost.get()));
        }
    }
}

/// Success, or [`LOST_EXIT`] when events were lost.
fn exit_status(lost: bool) -> ExitCode {
    if lost {
        ExitCode::from(LOST_EXIT)
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes one event read in place.
fn write_ref(out: &mut impl Write, event: &EventRef<'_>, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            out.write_all(event.json().as_bytes())?;
            out.write_all(b"\n")
        }
        Format::Text => write_text(
            out,
            event.timestamp,
            event.id,
            &event.event_type,
            event.resource_id.as_deref(),
            event.data.get(),
        ),
    }
}

/// One readable line: time, id, type, resource, and the data unless it is `null`.
fn write_text(
    out: &mut impl Write,
    timestamp: SystemTime,
    id: EventId,
    event_type: &str,
    resource: Option<&str>,
    data: &str,
) -> std::io::Result<()> {
    let time: chrono::DateTime<chrono::Utc> = timestamp.into();
    let (space, data) = if data == "null" {
        ("", "")
    } else {
        (" ", data)
    };
    writeln!(
        out,
        "{} #{id} {event_type} {}{space}{data}",
        time.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        resource.unwrap_or("-"),
    )
}

/// Prints one event; false when stdout is gone (e.g. piped into `head`).
fn print_event(out: &mut impl Write, event: &Event, format: Format) -> bool {
    let written = match format {
        Format::Json => serde_json::to_writer(&mut *out, event)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n")),
        Format::Text => write_text(
            out,
            event.timestamp,
            event.id,
            &event.event_type,
            event.resource_id.as_deref(),
            &event.data.to_string(),
        ),
    };
    written.and_then(|()| out.flush()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], limit: usize) -> Vec<PipedLine> {
        let mut splitter = LineSplitter::new(limit);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut lines);
        }
        lines.extend(splitter.finish());
        lines
    }

    fn line(kept: &[u8], len: usize) -> PipedLine {
        PipedLine {
            kept: kept.to_vec(),
            len,
        }
    }

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        for (text, bytes) in [
            ("4096", 4096),
            ("64K", 64 << 10),
            ("512M", 512 << 20),
            ("10G", 10 << 30),
            ("2T", 2 << 40),
            ("1.5G", 3 << 29),
            ("10GiB", 10 << 30),
            ("10gb", 10 << 30),
            (" 7m ", 7 << 20),
            ("100B", 100),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "G", "10X", "-1", "1e3", "ten", "10 G B", "99999999999T"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_age("7").unwrap_err().contains("7d, 12h or 90m"));
        assert!(parse_age("10ms")
            .unwrap_err()
            .contains("less than a second"));
    }

    #[test]
    fn lines_split_across_chunks_keep_their_bytes_and_the_last_line_counts() {
        let lines = split(&[b"ab", b"c\r\n\nde\xff", b"f\ng", b"h"], 100);
        assert_eq!(
            lines,
            [
                line(b"abc", 3),
                line(b"", 0),
                line(b"de\xfff", 4),
                line(b"gh", 2)
            ]
        );
        assert_eq!(split(&[b"x\n"], 100), [line(b"x", 1)]);
        assert_eq!(split(&[b"\r"], 100), [line(b"", 0)]);
    }

    #[test]
    fn a_long_line_keeps_its_first_bytes_and_its_length() {
        let long = vec![b'a'; 10_000];
        let lines = split(&[&long, b"\r\nnext"], 100);
        assert_eq!(lines, [line(&long[..100], 10_000), line(b"next", 4)]);
        // Exactly the limit, then `\r\n`: whole.
        let lines = split(&[&long[..100], b"\r\n"], 100);
        assert_eq!(lines, [line(&long[..100], 100)]);
    }

    #[test]
    fn a_cut_line_is_published_marked_and_never_with_half_a_character() {
        let mut kept = "é".repeat(50).into_bytes();
        kept.push(0xc3);
        let event = line_event("r", true, &line(&kept, 5000));
        assert_eq!(event.event_type, "log.stderr");
        assert_eq!(event.data["truncated"], true);
        assert_eq!(event.data["bytes"], 5000);
        let message = event.data["message"].as_str().unwrap();
        assert!(
            message.starts_with(&"é".repeat(50))
                && message.ends_with("… [line of 5000 bytes, first 100 published]"),
            "{message}"
        );
        let whole = line_event("r", false, &line(b"ok \xff", 4));
        assert_eq!(whole.data["message"], "ok \u{fffd}");
        assert!(whole.data.get("truncated").is_none());
    }
}
