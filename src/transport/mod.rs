//! Serving a bus on a local socket and attaching to one from another process.
//!
//! - [`Server`] serves an [`EventBus`](crate::EventBus) on a Unix domain socket (a named pipe on
//!   Windows) through `interprocess`, with tokio.
//! - [`Client`] attaches: [`Client::publish`], [`Client::subscribe`] (a [`RemoteSubscriber`] that
//!   yields the same [`Event`](crate::Event)s as an in-process subscriber), [`Client::history`],
//!   [`Client::stats`], [`Client::ping`].
//! - [`ReconnectingSubscriber`] keeps a subscription alive across server restarts, resuming from the
//!   last id it saw and telling its caller when it lost and regained the server.
//! - [`frame`] is the wire format, described for other languages in `docs/protocol.md`.
//!
//! The default socket is [`default_socket_path`].

mod client;
pub mod frame;
mod io;
pub mod ownership;
mod server;

pub use client::{
    Client, ClientError, ClientOptions, ConnectionHandle, ReconnectingSubscriber, RemoteItem,
    RemoteRef, RemoteStats, RemoteSubscriber, SubscriptionItem, DEFAULT_MAX_LINE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_WINDOW,
};
pub use frame::{ServerHello, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
pub use server::{shutdown_signal, ServeError, Server, ServerConfig, ServerCounters};

use std::path::PathBuf;

/// Events the monitor and a served bus keep by default: close to a minute of a bus publishing 1,000
/// events a second, in about 4 MB for events of a few fields (the compact store keeps 60-80 bytes
/// an event; measured in `benches/store.rs`).
pub const DEFAULT_HISTORY: usize = 50_000;

/// The one tokio runtime builder of the command line and the monitor: all drivers (I/O, time)
/// enabled; `workers` 1 runs everything on the calling thread, more runs that many worker threads.
///
/// # Errors
///
/// The runtime could not be built (no threads, no epoll).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut multi = tokio::runtime::Builder::new_multi_thread();
        multi.worker_threads(workers);
        multi
    };
    builder.enable_all().build()
}

/// The environment variable that overrides the default socket path.
pub const SOCKET_ENV: &str = "IPCKIT_SOCKET";

/// Where the bus socket is by default: `$IPCKIT_SOCKET` if set and not empty; else `ipckit/default.sock`
/// in the per-user runtime directory (`$XDG_RUNTIME_DIR` on Linux, or, when a program was started
/// without it, as MCP clients start their servers, `/run/user/UID` if that is this user's own `0700`
/// directory, so both find the same bus); else in a per-user directory under the temp dir
/// (`/tmp/ipckit-UID/default.sock`). Never the Linux abstract namespace.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(runtime) =
        directories::BaseDirs::new().and_then(|b| b.runtime_dir().map(PathBuf::from))
    {
        return runtime.join("ipckit").join("default.sock");
    }
    #[cfg(target_os = "linux")]
    if let Some(runtime) = login_runtime_dir() {
        return runtime.join("ipckit").join("default.sock");
    }
    #[cfg(unix)]
    let user = ownership::current_uid().to_string();
    #[cfg(not(unix))]
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
    std::env::temp_dir()
        .join(format!("ipckit-{user}"))
        .join("default.sock")
}

/// `/run/user/UID`, the runtime directory systemd-logind makes for a logged-in user, if it exists, is
/// this user's and is closed to others: what `$XDG_RUNTIME_DIR` would have named.
#[cfg(target_os = "linux")]
fn login_runtime_dir() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = ownership::current_uid();
    let dir = PathBuf::from(format!("/run/user/{uid}"));
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_can_move_between_tasks() {
        assert_send_sync::<Client>();
        assert_send_sync::<ConnectionHandle>();
        assert_send_sync::<ServerCounters>();
        assert_send::<Server>();
        assert_send::<RemoteSubscriber>();
        assert_send::<ReconnectingSubscriber>();
    }

    #[test]
    fn the_environment_variable_overrides_the_default_socket() {
        // The only test in this binary that touches IPCKIT_SOCKET.
        std::env::set_var(SOCKET_ENV, "/tmp/x/bus.sock");
        assert_eq!(default_socket_path(), PathBuf::from("/tmp/x/bus.sock"));
        std::env::remove_var(SOCKET_ENV);
        let path = default_socket_path();
        assert!(path.ends_with("default.sock"), "{}", path.display());
        assert!(path.is_absolute());
    }
}
