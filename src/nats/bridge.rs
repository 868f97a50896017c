//! `ipckit-top bridge`: forwards every event of a local bus to the stream, and resumes after either
//! side restarts without a duplicate or a silent gap.
//!
//! # How it resumes
//!
//! The bridge keeps a checkpoint per origin in the KV bucket [`CHECKPOINT_BUCKET`] (key
//! `STREAM.ORIGIN`, escaped: [`checkpoint_key`]): the bus instance, the last origin id NATS
//! acknowledged and its stream sequence, updated as acks arrive (at most ten times a second) and
//! written once more, marked clean, when the bridge stops on SIGINT or SIGTERM.
//!
//! On start it reads the checkpoint. If the bridge did not stop cleanly, acks after the last write
//! may be missing from it, so it reads the stream's headers from the checkpoint's sequence on and
//! takes the highest id of its origin and instance found there. Then:
//! - same bus instance: it subscribes from the next id; what the bus's history no longer holds
//!   comes as a loss, reported on stderr with its count and in the [`header::LOST`]
//!   header of the next event forwarded;
//! - another instance (the bus restarted, its ids start over): it forwards everything the new bus
//!   holds; what the old one published after the checkpoint was never forwarded, in a number no one
//!   can tell (unless its last event was `system.shutdown`), and is reported so.
//!
//! Every event carries `Nats-Msg-Id` = instance + id, so what is published twice (the window in
//! flight when NATS or the bridge went away) is dropped by the server within the stream's duplicate
//! window (2 minutes unless the stream says otherwise).

use super::mapping::{self, header, Mapping};
use super::{ensure_stream, jetstream, NatsError, NatsOptions, Prepared, Publisher};
use crate::event_stream::{event_types, EventFilter, EventId, Loss, LossReason, Replay};
use crate::transport::{Client, ReconnectingSubscriber, RemoteRef, SubscriptionItem};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The KV bucket of the bridges' checkpoints.
pub const CHECKPOINT_BUCKET: &str = "ipckit-bridges";

/// How often the checkpoint is written at most while acks arrive.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// What the bridge is asked to do.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// The local bus's socket.
    pub socket: PathBuf,
    /// NATS and the stream.
    pub nats: NatsOptions,
    /// The origin name in the events' headers (the host name by default).
    pub origin: String,
    /// Only the events this matches are forwarded.
    pub filter: EventFilter,
    /// Acks outstanding at most.
    pub window: usize,
}

/// Where a bridge got to, as kept in [`CHECKPOINT_BUCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The bus instance the ids belong to.
    pub instance: String,
    /// The last id NATS acknowledged.
    pub id: EventId,
    /// Its stream sequence.
    pub seq: u64,
    /// Written when the bridge stopped with every ack in: `id` is exactly the last one.
    #[serde(default)]
    pub clean: bool,
    /// The event at `id` was the bus's `system.shutdown`: nothing came after it.
    #[serde(default)]
    pub complete: bool,
}

/// The checkpoint key of `origin` on `stream`: `STREAM.ORIGIN`, with every character but ASCII
/// letters, digits, `-` and `_` written `=XX` (its UTF-8 bytes in hex), so any name is a valid key
/// and two names never share one.
///
/// ```
/// assert_eq!(ipckit::nats::bridge::checkpoint_key("IPCKIT", "render-01"), "IPCKIT.render-01");
/// assert_eq!(ipckit::nats::bridge::checkpoint_key("IPCKIT", "a.b c"), "IPCKIT.a=2Eb=20c");
/// ```
pub fn checkpoint_key(stream: &str, origin: &str) -> String {
    let escape = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("={byte:02X}"));
            }
        }
        if out.is_empty() {
            out.push_str("=00");
        }
        out
    };
    format!("{}.{}", escape(stream), escape(origin))
}

/// What happened when the bridge stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Events NATS acknowledged.
    pub forwarded: u64,
    /// Of those, already stored (resends dropped by message id).
    pub duplicates: u64,
    /// Events reported lost (in losses with a count).
    pub lost: u64,
}

/// Runs the bridge until `stop` is cancelled; `say` gets each line worth telling the operator
/// (where it resumes, losses with their count, NATS or the bus going away and coming back).
///
/// # Errors
///
/// NATS refuses the stream or the checkpoint bucket (a stream of other limits, no JetStream, bad
/// credentials).
pub async fn run(
    options: BridgeOptions,
    stop: CancellationToken,
    say: impl Fn(&str) + Send + Sync + 'static,
) -> Result<BridgeSummary, NatsError> {
    let say = Arc::new(say);
    let Some(client) = connect_until(&options.nats, &stop, &*say).await else {
        return Ok(BridgeSummary::default());
    };
    let js = jetstream(client, Duration::from_secs(5));
    let stream = ensure_stream(&js, &options.nats).await?;
    let mapping = options.nats.mapping();
    let bucket = checkpoint_bucket(&js).await?;
    let key = checkpoint_key(mapping.stream(), &options.origin);
    let saved: Option<Checkpoint> = bucket
        .get(key.clone())
        .await
        .map_err(|e| NatsError::request("reading the bridge's checkpoint", e))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());

    let Some(instance) = bus_instance(&options.socket, &stop, &*say).await else {
        return Ok(BridgeSummary::default());
    };
    let mut pending_loss: Option<Loss> = None;
    let replay = match &saved {
        None => {
            say(&format!(
                "forwarding the bus at {} to {} as origin {} (everything it holds, then live)",
                options.socket.display(),
                options.nats.label(),
                options.origin
            ));
            Replay::All
        }
        Some(saved) if saved.instance == *instance => {
            let mut last = saved.id;
            if !saved.clean {
                let found = last_in_stream(
                    stream.clone(),
                    &mapping,
                    &options.origin,
                    &instance,
                    saved.seq + 1,
                )
                .await?;
                last = last.max(found.unwrap_or(0));
            }
            say(&format!(
                "resuming the bus at {} after #{last}, the last event NATS acknowledged",
                options.socket.display()
            ));
            Replay::FromId(last + 1)
        }
        Some(saved) => {
            if !saved.complete {
                pending_loss = Some(Loss {
                    count: None,
                    first_id: Some(saved.id + 1),
                    last_id: None,
                    reason: LossReason::BusRestarted,
                });
                say(&format!(
                    "the bus at {} is a new one (its ids start over): whatever the old one \
                     published after #{} was never forwarded and is lost",
                    options.socket.display(),
                    saved.id
                ));
            }
            Replay::All
        }
    };

    let checkpoints = spawn_checkpoints(bucket.clone(), key.clone());
    let mut sub = ReconnectingSubscriber::new(&options.socket, options.filter.clone(), replay);
    let trouble = Arc::clone(&say);
    let mut publisher = Publisher::new(js, mapping, &options.origin, options.window)
        .on_trouble(move |line| trouble(line));
    let mut current: Arc<str> = instance;
    let mut verified = false;
    let mut away = false;
    let mut summary = BridgeSummary::default();
    let mut last_type_shutdown = false;
    let mut last_checkpoint: Option<Checkpoint> = saved;

    let note_acked = |acked: &super::Acked,
                      summary: &mut BridgeSummary,
                      shutdown: bool,
                      last: &mut Option<Checkpoint>| {
        summary.forwarded += 1;
        summary.duplicates += u64::from(acked.duplicate);
        let checkpoint = Checkpoint {
            instance: acked.instance.to_string(),
            id: acked.origin_id,
            seq: acked.sequence,
            clean: false,
            complete: shutdown,
        };
        *last = Some(checkpoint.clone());
        let _ = checkpoints.send(Some(checkpoint));
    };

    loop {
        if stop.is_cancelled() {
            break;
        }
        let item = if publisher.in_flight() > 0 {
            // Events first while the bus has them; otherwise settle acks as they come in, so the
            // checkpoint keeps up, without letting the window run dry.
            tokio::select! {
                biased;
                item = next(&mut sub) => item,
                () = publisher.answered() => {
                    let acked = publisher.settle().await?;
                    note_acked(&acked, &mut summary, last_type_shutdown && publisher.in_flight() == 0, &mut last_checkpoint);
                    continue;
                }
                () = stop.cancelled() => break,
            }
        } else {
            tokio::select! {
                () = stop.cancelled() => break,
                item = next(&mut sub) => item,
            }
        };
        let item = match item {
            Next::Event(prepared, shutdown) => {
                check_instance(&sub, &mut verified, &mut current, &mut pending_loss);
                last_type_shutdown = shutdown;
                let lost = pending_loss.take();
                if let Some(acked) = publisher
                    .send_prepared(&current, prepared, lost.as_ref())
                    .await?
                {
                    note_acked(&acked, &mut summary, false, &mut last_checkpoint);
                }
                continue;
            }
            Next::Item(item) => item,
        };
        match item {
            SubscriptionItem::Event(event) => {
                check_instance(&sub, &mut verified, &mut current, &mut pending_loss);
                last_type_shutdown = event.event_type == event_types::SYSTEM_SHUTDOWN;
                let lost = pending_loss.take();
                if let Some(acked) = publisher.send(&current, &event, lost.as_ref()).await? {
                    note_acked(&acked, &mut summary, false, &mut last_checkpoint);
                }
            }
            SubscriptionItem::Lost(loss) => {
                summary.lost += loss.count.unwrap_or(0);
                say(&format!(
                    "{loss} on the bus at {}; the next event forwarded says so",
                    options.socket.display()
                ));
                merge(&mut pending_loss, loss);
            }
            SubscriptionItem::Disconnected { retry_in } => {
                if !away {
                    away = true;
                    say(&format!(
                        "the bus at {} went away; retrying (next in {:.1} s)",
                        options.socket.display(),
                        retry_in.as_secs_f64()
                    ));
                }
            }
            SubscriptionItem::Reconnected { new_bus } => {
                away = false;
                if let Some(now) = sub.client().map(|c| c.hello().instance.clone()) {
                    current = Arc::from(now);
                }
                say(&format!(
                    "attached to the bus at {} again{}",
                    options.socket.display(),
                    if new_bus {
                        " (a new bus: forwarding all it holds)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }

    // Stopping: every ack in, then a clean checkpoint.
    match tokio::time::timeout(Duration::from_secs(10), publisher.flush()).await {
        Ok(Ok(acked)) => {
            for acked in acked {
                note_acked(
                    &acked,
                    &mut summary,
                    last_type_shutdown,
                    &mut last_checkpoint,
                );
            }
            drop(checkpoints);
            if let Some(mut last) = last_checkpoint {
                last.clean = true;
                if let Ok(bytes) = serde_json::to_vec(&last) {
                    bucket
                        .put(key, bytes.into())
                        .await
                        .map_err(|e| NatsError::request("writing the bridge's checkpoint", e))?;
                }
            }
        }
        _ => say(&format!(
            "{} events were not acknowledged before stopping; the next start finds out which \
             NATS has",
            publisher.in_flight()
        )),
    }
    Ok(summary)
}

/// What the bridge reads next from the bus.
enum Next {
    /// An event read in place, ready to publish; whether it is the bus's `system.shutdown`.
    Event(Prepared, bool),
    /// Anything else the subscription says (or an event it handed over owned).
    Item(SubscriptionItem),
}

/// The next event (read in place: its JSON is forwarded as it came) or other item of `sub`.
///
/// Cancel-safe, as [`ReconnectingSubscriber::next_refs`].
async fn next(sub: &mut ReconnectingSubscriber) -> Next {
    loop {
        let mut got = None;
        let other = sub
            .next_refs(|item| {
                got = Some(match item {
                    RemoteRef::Event(event) => Next::Event(
                        Prepared::new(&event),
                        event.event_type == event_types::SYSTEM_SHUTDOWN,
                    ),
                    RemoteRef::Lost(loss) => Next::Item(SubscriptionItem::Lost(loss)),
                });
                ControlFlow::Break(())
            })
            .await;
        if let Some(item) = other {
            return Next::Item(item);
        }
        if let Some(got) = got {
            return got;
        }
    }
}

/// On the first event: if the bus was replaced between the bridge's look at it and the
/// subscription, events are now of the new instance, and what the old one published last is lost.
fn check_instance(
    sub: &ReconnectingSubscriber,
    verified: &mut bool,
    current: &mut Arc<str>,
    pending_loss: &mut Option<Loss>,
) {
    if *verified {
        return;
    }
    *verified = true;
    if let Some(now) = sub.client().map(|c| c.hello().instance.clone()) {
        if *now != **current {
            *current = Arc::from(now);
            merge(
                pending_loss,
                Loss {
                    count: None,
                    first_id: None,
                    last_id: None,
                    reason: LossReason::BusRestarted,
                },
            );
        }
    }
}

/// Adds `loss` to the loss waiting to be said by the next event.
fn merge(pending: &mut Option<Loss>, loss: Loss) {
    *pending = Some(match pending.take() {
        None => loss,
        Some(before) => Loss {
            count: before.count.zip(loss.count).map(|(a, b)| a + b),
            first_id: before.first_id.or(loss.first_id),
            last_id: loss.last_id.or(before.last_id),
            reason: if before.reason == loss.reason {
                loss.reason
            } else {
                LossReason::Other
            },
        },
    });
}

/// Connects to NATS, retrying every second (saying so once) until it answers or `stop`.
async fn connect_until(
    options: &NatsOptions,
    stop: &CancellationToken,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Option<async_nats::Client> {
    let mut said = false;
    loop {
        match super::connect(options, None).await {
            Ok(client) => return Some(client),
            Err(e) => {
                if !said {
                    said = true;
                    say(&format!("{e}; retrying every second"));
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The instance of the bus at `socket`, waiting (saying so once) until one answers or `stop`.
async fn bus_instance(
    socket: &std::path::Path,
    stop: &CancellationToken,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Option<Arc<str>> {
    let mut said = false;
    loop {
        match Client::connect(socket).await {
            Ok(client) => return Some(Arc::from(client.hello().instance.as_str())),
            Err(e) => {
                if !said {
                    said = true;
                    say(&format!("{e}; waiting for it"));
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The checkpoint bucket, created when absent. It is created as the stream of a KV bucket
/// (`KV_ipckit-bridges`, subjects `$KV.ipckit-bridges.>`, one value per key), as `nats kv add`
/// makes it, so `nats kv get ipckit-bridges KEY` reads it; made directly because the client's own
/// bucket creation first asks for account information that servers before 2.10 answer in a form
/// it does not read.
async fn checkpoint_bucket(js: &async_nats::jetstream::Context) -> Result<kv::Store, NatsError> {
    if let Ok(store) = js.get_key_value(CHECKPOINT_BUCKET).await {
        return Ok(store);
    }
    use async_nats::jetstream::stream;
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{CHECKPOINT_BUCKET}"),
            description: Some("where each ipckit-top bridge got to".to_owned()),
            subjects: vec![format!("$KV.{CHECKPOINT_BUCKET}.>")],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            storage: stream::StorageType::File,
            num_replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await;
    match js.get_key_value(CHECKPOINT_BUCKET).await {
        Ok(store) => Ok(store),
        Err(get) => Err(match created {
            Err(create) => NatsError::request("creating the bridges' checkpoint bucket", create),
            Ok(_) => NatsError::request("opening the bridges' checkpoint bucket", get),
        }),
    }
}

/// A task that writes the latest checkpoint sent to it, at most every [`CHECKPOINT_EVERY`]; it ends
/// when the sender is dropped (after writing what it was last sent).
fn spawn_checkpoints(
    bucket: kv::Store,
    key: String,
) -> tokio::sync::watch::Sender<Option<Checkpoint>> {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<Checkpoint>>(None);
    tokio::spawn(async move {
        loop {
            let open = rx.changed().await.is_ok();
            let latest = rx.borrow_and_update().clone();
            if let Some(checkpoint) = latest {
                if let Ok(bytes) = serde_json::to_vec(&checkpoint) {
                    // A write that fails is retried with the next checkpoint; the resume scan covers
                    // what it would have said.
                    let _ = bucket.put(key.as_str(), bytes.into()).await;
                }
            }
            if !open {
                return;
            }
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
    });
    tx
}

/// The highest id of `origin`'s `instance` in the stream from sequence `from` to its current end,
/// reading headers only.
async fn last_in_stream(
    mut stream: async_nats::jetstream::stream::Stream,
    mapping: &Mapping,
    origin: &str,
    instance: &str,
    from: u64,
) -> Result<Option<EventId>, NatsError> {
    let what = || format!("reading {} for where the bridge got to", mapping.stream());
    let end = stream
        .info()
        .await
        .map_err(|e| NatsError::request(what(), e))?
        .state
        .last_sequence;
    if from > end {
        return Ok(None);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::request(what(), e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| NatsError::request(what(), e))?;
    let mut highest: Option<EventId> = None;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| NatsError::request(what(), e))?;
        let seq = message.info().map_or(end, |info| info.stream_sequence);
        if let Some(headers) = &message.headers {
            let value = |name: &str| {
                headers
                    .get(name)
                    .map(|v| mapping::header_text(v.as_str()).into_owned())
            };
            if value(header::ORIGIN).as_deref() == Some(origin)
                && value(header::INSTANCE).as_deref() == Some(instance)
            {
                if let Some(id) = value(header::ORIGIN_ID).and_then(|v| v.parse::<u64>().ok()) {
                    highest = Some(highest.map_or(id, |h| h.max(id)));
                }
            }
        }
        if seq >= end {
            break;
        }
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct() {
        assert_eq!(checkpoint_key("IPCKIT", "host-1"), "IPCKIT.host-1");
        assert_ne!(checkpoint_key("S", "a.b"), checkpoint_key("S", "a_b"));
        assert_ne!(checkpoint_key("S", "a=2Eb"), checkpoint_key("S", "a.b"));
        assert_eq!(checkpoint_key("S", ""), "S.=00");
        let key = checkpoint_key("S", "é x/y");
        assert!(key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.".contains(c)));
    }

    #[test]
    fn losses_waiting_to_be_said_add_up() {
        let mut pending = None;
        merge(
            &mut pending,
            Loss {
                count: Some(2),
                first_id: Some(5),
                last_id: Some(6),
                reason: LossReason::HistoryEvicted,
            },
        );
        merge(
            &mut pending,
            Loss {
                count: Some(3),
                first_id: Some(9),
                last_id: Some(11),
                reason: LossReason::HistoryEvicted,
            },
        );
        assert_eq!(
            pending,
            Some(Loss {
                count: Some(5),
                first_id: Some(5),
                last_id: Some(11),
                reason: LossReason::HistoryEvicted,
            })
        );
    }
}
