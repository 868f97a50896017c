//! The `ipckit-top` command line: argument parsing (clap) and one function per subcommand.
//!
//! `src/bin/ipckit-top.rs` only calls [`main`]. Every failure is one line on stderr and a non-zero
//! exit status; `pipe` exits with its child's status.

use crate::event_stream::{parse_bound, Bound};
use crate::transport::frame::NewEvent;
use crate::transport::{
    default_socket_path, Client, ClientError, ServeError, Server, ServerConfig,
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
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY, value_parser = at_least_one)]
    pub history: usize,
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
    /// Publish each line of stdin, or of a command's stdout and stderr, as log events
    Pipe(PipeArgs),
    /// Publish an MCP progress notification
    Progress(ProgressArgs),
    /// Print events as they happen (like `docker events`)
    Events(EventsArgs),
    /// Run an MCP stdio server behind a transparent proxy that publishes its calls, progress and logs
    #[cfg(unix)]
    Mcp(McpArgs),
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
pub struct ServeArgs {
    /// Events kept for replay and history queries
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY)]
    pub history: usize,
    /// Add the built-in demo workload
    #[arg(long)]
    pub demo: bool,
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
    /// Command to run; its stdout and stderr lines are published (and passed through)
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
}

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
    let Some(command) = cli.command else {
        return run_monitor(MonitorOptions {
            socket,
            filter: cli.filter,
            demo: cli.demo,
            history: cli.history,
        });
    };
    let multi = matches!(command, Command::Serve(_));
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|source| CliError::Io {
        context: "cannot start the async runtime".into(),
        source,
    })?;
    runtime.block_on(async move {
        match command {
            Command::Serve(args) => serve(socket, args).await,
            Command::Publish(args) => publish(socket, args).await,
            Command::Pipe(args) => pipe(socket, args).await,
            Command::Progress(args) => progress(socket, args).await,
            Command::Events(args) => events(socket, args).await,
            #[cfg(unix)]
            Command::Mcp(args) => Ok(crate::mcp::run(crate::mcp::McpOptions {
                socket,
                name: args.name,
                inject: !args.no_inject,
                command: args.command,
            })
            .await?),
        }
    })
}

/// The full-screen monitor: attaches to the bus at the socket, or hosts one there
/// ([`crate::top::run_at_socket`]).
///
/// # Errors
///
/// The monitor's failure (a bad filter, a socket that cannot be served, no terminal).
pub fn run_monitor(options: MonitorOptions) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            context: "cannot start the async runtime".into(),
            source,
        })?;
    let top = crate::top::TopOptions {
        socket_label: crate::top::socket_label(&options.socket),
        filter: options.filter,
        history: options.history,
        ..Default::default()
    };
    runtime.block_on(crate::top::run_at_socket(options.socket, top, options.demo))?;
    Ok(ExitCode::SUCCESS)
}

/// Events the monitor and a served bus keep by default: close to a minute of a bus publishing 1,000
/// events a second, in about 60 MB for events of a few fields (measured with `serve` and the monitor).
pub const DEFAULT_HISTORY: usize = 50_000;

/// Events queued per subscriber of `serve`'s bus (one pointer each) before the oldest are dropped:
/// enough for bursts of batched publishes while a remote subscriber's socket drains.
pub const SERVE_SUBSCRIBER_BUFFER: usize = 16 * 1024;

async fn serve(socket: PathBuf, args: ServeArgs) -> Result<ExitCode, CliError> {
    let bus = EventBus::new(EventBusConfig {
        history_size: args.history,
        subscriber_buffer: SERVE_SUBSCRIBER_BUFFER,
        ..Default::default()
    });
    let server = Server::bind(bus.clone(), ServerConfig::new(&socket))?;
    eprintln!(
        "ipckit-top: serving a bus at {} (Ctrl-C to stop)",
        socket.display()
    );
    let demo = args.demo.then(|| crate::demo::spawn(bus.publisher()));
    server.run().await?;
    drop(demo);
    Ok(ExitCode::SUCCESS)
}

async fn publish(socket: PathBuf, args: PublishArgs) -> Result<ExitCode, CliError> {
    if args.stdin {
        return publish_stdin(socket).await;
    }
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
    let event = new.into_event().map_err(CliError::Usage)?;
    let client = Client::connect(&socket).await?;
    let id = client.publish(&event).await?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Lines from stdin on a thread of their own (stdin reads block), as (line number, text). A line
/// that is not UTF-8 comes as an `InvalidData` error (or, if `lossy`, with replacement characters)
/// and reading goes on; other read errors end the stream.
fn stdin_lines(lossy: bool) -> tokio::sync::mpsc::Receiver<(usize, std::io::Result<String>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let stdin = std::io::stdin();
        for (index, line) in stdin.lock().split(b'\n').enumerate() {
            let (line, stop) = match line {
                Ok(bytes) if lossy => (Ok(String::from_utf8_lossy(&bytes).into_owned()), false),
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
    let mut lines = stdin_lines(false);
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

async fn pipe(socket: PathBuf, args: PipeArgs) -> Result<ExitCode, CliError> {
    use crate::transport::frame::{LineReader, ReadLine};
    let client = Client::connect(&socket).await?;
    let resource = args.resource;
    let Some((program, rest)) = args.command.split_first() else {
        let mut lines = stdin_lines(true);
        while let Some((number, line)) = lines.recv().await {
            let line = line.map_err(|source| CliError::Io {
                context: format!("cannot read stdin line {number}"),
                source,
            })?;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            client.publish(&Event::stdout(&resource, line)).await?;
        }
        return Ok(ExitCode::SUCCESS);
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
    client
        .publish(&Event::with_resource(
            crate::event_types::TASK_STARTED,
            &resource,
            serde_json::json!({ "command": args.command, "pid": child.id() }),
        ))
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, String)>(1024);
    let forward = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, is_err: bool| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Some(stream) = stream else { return };
            let mut reader = LineReader::new(tokio::io::BufReader::new(stream), 1 << 20);
            let mut line = Vec::new();
            loop {
                match reader.read_line(&mut line).await {
                    Ok(ReadLine::Line) => {
                        let text =
                            String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line));
                        if tx.send((is_err, text.into_owned())).await.is_err() {
                            return;
                        }
                    }
                    Ok(ReadLine::TooLong(len)) => {
                        let note = format!("[line of {len} bytes omitted]");
                        if tx.send((is_err, note)).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        })
    };
    let out = forward(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        false,
    );
    let err = forward(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        true,
    );
    drop(tx);
    while let Some((is_err, line)) = rx.recv().await {
        if is_err {
            eprintln!("{line}");
            client.publish(&Event::stderr(&resource, &line)).await?;
        } else {
            println!("{line}");
            client.publish(&Event::stdout(&resource, &line)).await?;
        }
    }
    let _ = (out.await, err.await);
    let status = child.wait().await.map_err(|source| CliError::Io {
        context: format!("cannot wait for {program}"),
        source,
    })?;
    let (event, code) = exit_event(&resource, status);
    client.publish(&event).await?;
    Ok(ExitCode::from(code))
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
    let event = Event::mcp_progress(
        &args.token,
        args.progress,
        args.total,
        args.message.as_deref(),
    );
    let client = Client::connect(&socket).await?;
    let id = client.publish(&event).await?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

fn bound(flag: &str, value: Option<&str>) -> Result<Option<Bound>, CliError> {
    value
        .map(|v| parse_bound(v).map_err(|e| CliError::Usage(format!("{flag} {v:?}: {e}"))))
        .transpose()
}

async fn events(socket: PathBuf, args: EventsArgs) -> Result<ExitCode, CliError> {
    let mut filter = match &args.filter {
        Some(expr) => {
            EventFilter::parse(expr).map_err(|e| CliError::Usage(format!("--filter: {e}")))?
        }
        None => EventFilter::new(),
    };
    let since = bound("--since", args.since.as_deref())?;
    let until = bound("--until", args.until.as_deref())?;
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
    let client = Client::connect(&socket).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // An end already reached needs no following: what history holds is the whole answer.
    let ended = match until {
        Some(Bound::Time(t)) => t <= SystemTime::now(),
        Some(Bound::Id(id)) => id <= client.hello().last_id,
        None => false,
    };
    if args.no_follow || ended {
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
        if let Some(Bound::Id(from)) = since {
            let oldest = client.stats().await?.oldest_id;
            if let Some(oldest) = oldest.filter(|&oldest| from < oldest) {
                warn_not_kept(from, oldest);
            }
        }
        for event in client.history(&filter, None).await? {
            if !print_event(&mut out, &event, args.format) {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let replay = match since {
        Some(Bound::Time(t)) => Replay::FromTime(t),
        Some(Bound::Id(id)) => Replay::FromId(id),
        None => Replay::None,
    };
    let mut sub = client.subscribe(&filter, replay).await?;
    if let Some(gap) = sub.replay_gap() {
        warn_not_kept(gap.requested, gap.oldest_held);
    }
    let deadline = match until {
        Some(Bound::Time(t)) => Some(
            tokio::time::Instant::now()
                + t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
        ),
        _ => None,
    };
    // Events are printed as they arrive, read in place (never built into owned events), and
    // flushed once per arrival rather than once per event.
    let mut done = false;
    loop {
        let mut print = |event: EventRef<'_>| {
            let past = match until {
                Some(Bound::Time(t)) => event.timestamp > t,
                Some(Bound::Id(id)) => event.id > id,
                None => false,
            };
            done = past
                || write_ref(&mut out, &event, args.format).is_err()
                || event.event_type == crate::event_types::SYSTEM_SHUTDOWN
                || matches!(until, Some(Bound::Id(id)) if event.id >= id);
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
                () = tokio::time::sleep_until(at) => return Ok(ExitCode::SUCCESS),
            },
            None => sub.recv_refs(&mut print).await,
        };
        if received.is_none() {
            return Err(CliError::Client(ClientError::Closed));
        }
        if done || out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Says on stderr that `--since` asked for events history no longer holds.
fn warn_not_kept(from: EventId, oldest: EventId) {
    eprintln!(
        "ipckit-top: events #{from} to #{} are no longer kept (the bus keeps its last --history events); starting at #{oldest}",
        oldest.saturating_sub(1)
    );
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
