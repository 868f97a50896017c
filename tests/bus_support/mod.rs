//! Helpers shared by the bus's own tests.
#![allow(dead_code)]

use ipckit::{EventBus, EventBusConfig};

/// A bus keeping `history_size` events, with a live buffer of `subscriber_buffer` per subscriber and
/// the other settings at their defaults.
pub fn bus_sized(history_size: usize, subscriber_buffer: usize) -> EventBus {
    EventBus::new(EventBusConfig {
        history_size,
        subscriber_buffer,
        ..Default::default()
    })
}
