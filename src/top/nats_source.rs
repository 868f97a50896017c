//! The NATS source: the monitor on a JetStream stream (`ipckit-top --nats URL`). It loads the stream's
//! newest `--history` events, then follows live with an ordered consumer; each batch says which
//! origin its events came from ([`SourceMsg::EventsFrom`]) and each event's id is its stream
//! sequence, one order across all machines.
//!
//! While NATS is unreachable it sends [`SourceMsg::Disconnected`] with the time to the next attempt,
//! as the socket source does, and resumes after the last sequence it read when NATS is back (the
//! ordered consumer is recreated there). Events the stream's limits dropped before the monitor read
//! them, a consumer that starts later than asked, and events an origin lost before they reached
//! NATS all arrive as [`SourceMsg::Lost`] in their place.
//!
//! The scrubber reaches back past what the monitor holds: the source hands the monitor an
//! [`ArchiveLink`](super::ArchiveLink) and reads the stream back a page at a time on request
//! (`super::nats_archive`).

use super::runtime::run_with_source;
use super::source::{LossReason as TopReason, SourceMsg, CHANNEL_CAPACITY, MAX_BATCH};
use super::{State, TopError, TopOptions};
use crate::event_stream::BusStats;
use crate::event_stream::{Event, EventBus, EventBusConfig, EventFilter};
use crate::nats::{
    connect, ensure_stream, jetstream, retry_delay, Link, NatsItem, NatsOptions, Publisher, Start,
    StreamReader,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long JetStream requests of the monitor wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows the stream of `options` (its newest `history` events first) and forwards its events,
/// losses, connection changes and, twice a second, its counters (published: the last sequence;
/// subscribers: consumers of the stream; dropped: events its limits no longer keep) to the returned
/// receiver, from a task on the current tokio runtime. The task ends when the receiver is dropped.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn_nats_source(
    options: NatsOptions,
    history: usize,
) -> (mpsc::Receiver<SourceMsg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let archive = super::nats_archive::spawn_archive(options.clone(), tx.clone());
    let task = tokio::spawn(async move {
        if tx.send(SourceMsg::Archive(archive)).await.is_ok() {
            let _ = follow(options, history, &tx).await;
        }
    });
    (rx, task)
}

/// The source's loop; `Err` only when the monitor went away.
async fn follow(
    options: NatsOptions,
    history: usize,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<(), mpsc::error::SendError<SourceMsg>> {
    let label = options.label();
    let (links_tx, mut links) = mpsc::unbounded_channel();
    let client = loop {
        match connect(&options, Some(links_tx.clone())).await {
            Ok(client) => break client,
            // Only a bad URL or credentials file fails here; the monitor checked both before.
            Err(_) => {
                tx.send(SourceMsg::Disconnected {
                    retry_in: Duration::from_secs(2),
                })
                .await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let js = jetstream(client.clone(), REQUEST_TIMEOUT);
    let mut reader: Option<StreamReader> = None;
    let mut stream = None;
    let mut last_seq: Option<u64> = None;
    let mut stats = tokio::time::interval(Duration::from_millis(500));
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut attempt = 0usize;
    loop {
        if reader.is_none() && client.connection_state() == async_nats::connection::State::Connected
        {
            let opened = async {
                let s = ensure_stream(&js, &options).await?;
                let start = match last_seq {
                    None => Start::Newest(history as u64),
                    Some(seq) => Start::Sequence(seq + 1),
                };
                let r = StreamReader::open(s.clone(), options.mapping(), EventFilter::new(), start)
                    .await?;
                Ok::<_, crate::nats::NatsError>((s, r))
            }
            .await;
            match opened {
                Ok((s, r)) => {
                    attempt = 0;
                    stream = Some(s);
                    reader = Some(r);
                    tx.send(SourceMsg::Connected {
                        socket: label.clone(),
                        hosted: false,
                    })
                    .await?;
                }
                Err(_) => {
                    attempt += 1;
                    let retry_in = retry_delay(attempt);
                    tx.send(SourceMsg::Disconnected { retry_in }).await?;
                    tokio::time::sleep(retry_in).await;
                    continue;
                }
            }
        }
        let mut msgs: Vec<SourceMsg> = Vec::with_capacity(2);
        tokio::select! {
            biased;
            link = links.recv() => match link {
                Some(Link::Retrying(retry_in)) => msgs.push(SourceMsg::Disconnected { retry_in }),
                Some(Link::Disconnected) => msgs.push(SourceMsg::Disconnected { retry_in: retry_delay(1) }),
                Some(Link::Connected) if reader.is_some() => {
                    msgs.push(SourceMsg::Connected { socket: label.clone(), hosted: false });
                }
                Some(Link::Connected) | None => {}
            },
            _ = stats.tick() => {
                if let Some(s) = &stream {
                    if client.connection_state() == async_nats::connection::State::Connected {
                        if let Ok(info) = s.get_info().await {
                            msgs.push(SourceMsg::Stats(BusStats {
                                published: info.state.last_sequence,
                                subscribers: info.state.consumer_count,
                                dropped: info.state.first_sequence.saturating_sub(1),
                                ..BusStats::default()
                            }));
                        }
                    }
                }
            }
            item = next_item(&mut reader) => match item {
                Some(Ok(first)) => {
                    let Some(r) = reader.as_mut() else { continue };
                    let mut items = vec![first];
                    while items.len() < MAX_BATCH {
                        match r.try_next() {
                            Some(Ok(item)) => items.push(item),
                            _ => break,
                        }
                    }
                    last_seq = Some(r.last_seq());
                    batch(items, &mut msgs);
                }
                // The consumer failed for good: open a new one after the last sequence read.
                Some(Err(_)) | None => {
                    if let Some(r) = reader.take() {
                        if r.last_seq() > 0 {
                            last_seq = Some(r.last_seq());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
        for msg in msgs {
            tx.send(msg).await?;
        }
    }
}

/// The reader's next item; pending for ever without a reader.
async fn next_item(
    reader: &mut Option<StreamReader>,
) -> Option<Result<NatsItem, crate::nats::NatsError>> {
    match reader {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// Source messages for `items`, in order: runs of events of one origin, and losses.
pub(super) fn batch(items: Vec<NatsItem>, msgs: &mut Vec<SourceMsg>) {
    let mut run: Option<(Arc<str>, Vec<Arc<Event>>)> = None;
    let flush = |run: &mut Option<(Arc<str>, Vec<Arc<Event>>)>, msgs: &mut Vec<SourceMsg>| {
        if let Some((origin, events)) = run.take() {
            msgs.push(SourceMsg::EventsFrom { origin, events });
        }
    };
    for item in items {
        match item {
            NatsItem::Event(e) => match &mut run {
                Some((origin, events))
                    if Arc::ptr_eq(origin, &e.origin) || **origin == *e.origin =>
                {
                    events.push(e.event)
                }
                _ => {
                    flush(&mut run, msgs);
                    run = Some((e.origin, vec![e.event]));
                }
            },
            NatsItem::Lost(loss) => {
                flush(&mut run, msgs);
                msgs.push(SourceMsg::Lost(loss.into()));
            }
            NatsItem::OriginLost { loss, .. } => {
                flush(&mut run, msgs);
                // The ids are the origin's, not the stream's: the row gives the count and the why.
                let mut lost: super::source::Loss = loss.into();
                lost.first_id = None;
                lost.last_id = None;
                if lost.reason == TopReason::Other {
                    lost.reason = TopReason::HistoryEvicted;
                }
                msgs.push(SourceMsg::Lost(lost));
            }
        }
    }
    flush(&mut run, msgs);
}

/// Runs the monitor full-screen on the NATS stream of `nats` (see [`spawn_nats_source`]). The URL,
/// the credentials file and the stream are checked first when NATS answers, so a mistake is one line
/// on stderr rather than a screen that never fills. With `demo`, the built-in workload publishes to
/// the stream as origin `demo`.
///
/// # Errors
///
/// The filter does not parse, stdout is not a terminal, NATS refuses the stream or the credentials,
/// or the terminal failed.
pub async fn run_on_nats(
    nats: NatsOptions,
    options: TopOptions,
    demo: bool,
) -> Result<(), TopError> {
    State::new(&options)?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(TopError::NoTerminal);
    }
    // Fail fast on what waiting would not fix; a server that does not answer is waited for.
    match connect(&nats, None).await {
        Ok(client) => {
            ensure_stream(&jetstream(client, REQUEST_TIMEOUT), &nats).await?;
        }
        Err(
            e @ (crate::nats::NatsError::Creds { .. } | crate::nats::NatsError::Connect { .. }),
        ) if !e.to_string().contains("IO error") && !e.to_string().contains("timed out") => {
            return Err(e.into())
        }
        Err(_) => {}
    }
    let forward = demo.then(|| tokio::spawn(forward_demo(nats.clone())));
    let (source, task) = spawn_nats_source(nats, options.history);
    let result = run_with_source(options, source).await;
    task.abort();
    if let Some(forward) = forward {
        forward.abort();
    }
    result
}

/// Runs the demo workload on a bus of its own and publishes what it publishes to the stream.
async fn forward_demo(nats: NatsOptions) {
    let Ok(client) = connect(&nats, None).await else {
        return;
    };
    let js = jetstream(client, REQUEST_TIMEOUT);
    if ensure_stream(&js, &nats).await.is_err() {
        return;
    }
    let local = EventBus::new(EventBusConfig {
        history_size: 0,
        ..Default::default()
    });
    let instance = crate::nats::process_instance("demo");
    let sub = local.subscribe(EventFilter::new());
    let _workload = crate::demo::spawn(local.publisher());
    let mut publisher = Publisher::new(js, nats.mapping(), "demo", crate::nats::DEFAULT_WINDOW);
    while let Some(event) = sub.recv_async().await {
        if publisher.send(&instance, &event, None).await.is_err() {
            return;
        }
        if sub.is_empty() && publisher.flush().await.is_err() {
            return;
        }
    }
}
