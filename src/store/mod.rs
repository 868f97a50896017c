//! The event store: what the bus, the monitor and the data dir keep of past events.
#[cfg(unix)]
pub mod disk;
