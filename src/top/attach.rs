//! Attach or host: the monitor attaches to the bus served at a socket, or, if none answers there,
//! hosts one in this process and serves it on that socket so other programs can publish to it.

use super::remote::spawn_socket_source;
use super::runtime::{run_on_bus, run_with_source};
use super::{State, TopError, TopOptions};
use crate::event_stream::{Event, EventBus, EventBusConfig, EventFilter};
use crate::transport::{Client, Server, ServerConfig};
use std::path::PathBuf;

/// Events a hosted bus queues per subscriber before its slow-consumer policy drops the oldest.
pub const HOSTED_SUBSCRIBER_BUFFER: usize = 16 * 1024;

/// Runs the monitor on the bus at `socket`: attached if a bus answers there, else hosting one (with
/// `options.history` events of history) served at `socket` until the monitor quits. With `demo`, the
/// built-in workload publishes to the bus, either way.
///
/// # Errors
///
/// The filter does not parse or stdout is not a terminal (both before anything else happens), the
/// socket answers but not as a bus,
/// the socket cannot be served, or the terminal failed.
pub async fn run_at_socket(
    socket: PathBuf,
    options: TopOptions,
    demo: bool,
) -> Result<(), TopError> {
    State::new(&options)?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(TopError::NoTerminal);
    }
    match Client::connect(&socket).await {
        Ok(client) => {
            let forward = demo.then(|| tokio::spawn(forward_demo(client)));
            let (source, task) = spawn_socket_source(&socket);
            let result = run_with_source(options, source).await;
            task.abort();
            if let Some(forward) = forward {
                forward.abort();
            }
            result
        }
        Err(error) if error.is_disconnect() => {
            let bus = EventBus::new(EventBusConfig {
                history_size: options.history.max(1),
                subscriber_buffer: HOSTED_SUBSCRIBER_BUFFER,
                ..Default::default()
            });
            let server = Server::bind(bus.clone(), ServerConfig::new(&socket))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(server.run_until(async {
                let _ = stopped.await;
            }));
            let workload = demo.then(|| crate::demo::spawn(bus.publisher()));
            let result = run_on_bus(&bus, options).await;
            drop(workload);
            let _ = stop.send(());
            let served = serving.await;
            result?;
            match served {
                Ok(served) => served.map_err(TopError::from),
                Err(join) => Err(TopError::Draw(format!("the server task failed: {join}"))),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Runs the demo workload on a bus of its own and forwards what it publishes to `client`'s bus.
async fn forward_demo(client: Client) {
    let local = EventBus::new(EventBusConfig {
        history_size: 0,
        ..Default::default()
    });
    let sub = local.subscribe(EventFilter::new());
    let _workload = crate::demo::spawn(local.publisher());
    let mut batch: Vec<std::sync::Arc<Event>> = Vec::new();
    while let Some(first) = sub.recv_async().await {
        batch.push(first);
        sub.try_recv_batch(&mut batch, 255);
        let events: Vec<Event> = batch.drain(..).map(|e| (*e).clone()).collect();
        if client.publish_batch(&events).await.is_err() {
            return;
        }
    }
}
