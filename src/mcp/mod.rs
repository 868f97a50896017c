//! `ipckit-top mcp`: a transparent stdio proxy between an MCP client and an MCP server that puts
//! what passes on the bus.
//!
//! The proxy starts the server, relays the client's stdin to the server and the server's stdout to
//! the client byte for byte, and publishes (resource: the server's name):
//!
//! - `mcp.request` for each request (`{from, method, id, tool, arguments, call, progressToken,
//!   injected, bytes}`; arguments, or other requests' params, only up to 2 KiB);
//! - `mcp.response` when its response passes (`{from, method, id, tool, call, duration_ms, error,
//!   is_error, bytes}`); when the server exits with requests unanswered, one for each, failed, with
//!   `unanswered: true`;
//! - `mcp.notifications.progress` for every progress notification: the MCP progress payload, its
//!   message naming the tool, with `tool` and `call` when known;
//! - `mcp.notifications.<tail>` for other notifications (`message` for logging, `cancelled`, ...),
//!   with their params up to 2 KiB;
//! - `log.stderr` for each line of the server's stderr (which is also copied to ours unchanged);
//! - `mcp.server.started` and `mcp.server.exited` (`{exit_code}` or `{signal}`, and how many
//!   requests were left unanswered).
//!
//! Every request gets a call key `ipckit-PID-N` (`call` in its events), unique on the machine, that
//! ties its request, progress and response together. A `tools/call` from the client without a
//! progress token gets that key added as `params._meta.progressToken` (the one change the proxy
//! makes to a line, spliced into the original bytes), so the server reports progress; that progress
//! is published and not forwarded to the client, which did not ask for it. `--no-inject` turns this
//! off. Lines that are not JSON-RPC pass untouched and are not published.
//!
//! The relay never waits for the bus: events go through a bounded queue to a background publisher
//! that reconnects when the bus returns; while the bus is away or behind, events are counted as
//! dropped and said once on stderr. Signals the proxy gets (INT, TERM, HUP, QUIT, USR1, USR2) are
//! passed to the server, end of file on stdin closes the server's stdin, and the proxy exits with
//! the server's status (128 + N when signal N killed it).

mod gate;
mod message;
mod proxy;
mod publish;
mod relay;
mod tracker;

pub use gate::Gate;
pub use publish::Destination;
pub use relay::{relay, End, Lines, MAX_INSPECTED_LINE};
pub use tracker::{Action, Side, Tracker, INLINE_LIMIT, MAX_PENDING};

use std::process::ExitCode;

/// Published when the proxy has started the server (`{command, pid, inject}`).
pub const SERVER_STARTED: &str = "mcp.server.started";
/// Published when the server has exited (`{pid, exit_code | signal, unanswered}`).
pub const SERVER_EXITED: &str = "mcp.server.exited";

/// What `ipckit-top mcp` was asked to do.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// Where the events go: the bus at a socket, or a NATS stream.
    pub destination: Destination,
    /// The resource id of the events; the server command's file name when `None`.
    pub name: Option<String>,
    /// Add progress tokens to `tools/call` requests that have none.
    pub inject: bool,
    /// The server command and its arguments.
    pub command: Vec<String>,
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// No server command was given.
    #[error("no server command: give it after `--`, e.g. `ipckit-top mcp -- npx -y @modelcontextprotocol/server-everything`")]
    NoCommand,
    /// The server could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The command.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs the proxy until the server exits; the status to exit with (the server's).
///
/// Takes over the process's stdin and stdout (fd 0 and 1) for the relay: nothing else may use them.
///
/// # Errors
///
/// No command, a server that cannot be started, or no thread or signal handler to be had.
///
/// # Panics
///
/// Outside a tokio runtime.
pub async fn run(options: McpOptions) -> Result<ExitCode, McpError> {
    proxy::run(options).await
}
