//! The NATS source's archive: pages of the stream older than the monitor holds, read on request
//! for the scrubber ([`super::archive`]). Each page is read with an ordered consumer of its own,
//! from a stream sequence to another, on a connection of its own, so reading back never holds up
//! the live view.

use super::archive::{Anchor, ArchiveLink, ArchivePage, ArchiveRequest};
use super::nats_source::batch;
use super::source::SourceMsg;
use crate::event_stream::EventFilter;
use crate::nats::{connect, ensure_stream, jetstream, NatsError, NatsOptions, Start, StreamReader};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long reading one page may wait for the server between two messages.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts answering the monitor's page requests for the stream of `options` on `tx`, from a task
/// on the current tokio runtime; returns the link to send to the monitor. The task ends when the
/// link (and every clone of it) is dropped.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(super) fn spawn_archive(options: NatsOptions, tx: mpsc::Sender<SourceMsg>) -> ArchiveLink {
    let (link, mut requests) = ArchiveLink::new();
    tokio::spawn(async move {
        let mut js = None;
        while let Some(request) = requests.recv().await {
            let page = match read_page(&options, &mut js, request).await {
                Ok((msgs, first_kept)) => ArchivePage {
                    request,
                    msgs,
                    first_kept,
                    error: None,
                },
                Err(e) => {
                    // A connection that failed is made again for the next request.
                    js = None;
                    ArchivePage {
                        request,
                        msgs: Vec::new(),
                        first_kept: 0,
                        error: Some(e.to_string()),
                    }
                }
            };
            if tx.send(SourceMsg::Page(page)).await.is_err() {
                return;
            }
        }
    });
    link
}

/// The stream sequences a page for `anchor` covers, given the stream's first and last kept ones;
/// `None` when there is nothing there.
fn page_range(anchor: Anchor, count: usize, first: u64, last: u64) -> Option<(u64, u64)> {
    let count = u64::try_from(count.max(1)).unwrap_or(u64::MAX);
    let (from, to) = match anchor {
        Anchor::Before(id) => (id.saturating_sub(count), id.saturating_sub(1)),
        Anchor::After(id) => (id.saturating_add(1), id.saturating_add(count)),
        Anchor::Oldest => (first, first.saturating_add(count - 1)),
    };
    let (from, to) = (from.max(first).max(1), to.min(last));
    (from <= to).then_some((from, to))
}

/// Reads the page `request` asks for: its events and losses as source messages, and the first
/// sequence the stream keeps.
async fn read_page(
    options: &NatsOptions,
    js: &mut Option<async_nats::jetstream::Context>,
    request: ArchiveRequest,
) -> Result<(Vec<SourceMsg>, u64), NatsError> {
    let context = match js {
        Some(context) => context.clone(),
        None => {
            let context = jetstream(connect(options, None).await?, PAGE_TIMEOUT);
            *js = Some(context.clone());
            context
        }
    };
    let mut stream = ensure_stream(&context, options).await?;
    let info = stream
        .info()
        .await
        .map_err(|e| NatsError::request(format!("stream {}", options.mapping().stream()), e))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let Some((from, to)) = page_range(request.anchor, request.count, first, last) else {
        return Ok((Vec::new(), first));
    };
    let mut reader = StreamReader::open(
        stream,
        options.mapping(),
        EventFilter::new(),
        Start::Sequence(from),
    )
    .await?;
    reader.stop_at(to);
    let mut items = Vec::new();
    loop {
        match tokio::time::timeout(PAGE_TIMEOUT, reader.next()).await {
            Ok(Some(item)) => items.push(item?),
            Ok(None) => break,
            Err(_) => return Err(NatsError::request("reading the stream back", "timed out")),
        }
    }
    let mut msgs = Vec::new();
    batch(items, &mut msgs);
    Ok((msgs, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_where_asked_and_stay_within_what_the_stream_keeps() {
        // 100 events kept, 101 to 200.
        assert_eq!(
            page_range(Anchor::Before(151), 20, 101, 200),
            Some((131, 150))
        );
        assert_eq!(
            page_range(Anchor::Before(110), 20, 101, 200),
            Some((101, 109))
        );
        assert_eq!(page_range(Anchor::Before(101), 20, 101, 200), None);
        assert_eq!(
            page_range(Anchor::After(150), 20, 101, 200),
            Some((151, 170))
        );
        assert_eq!(
            page_range(Anchor::After(190), 20, 101, 200),
            Some((191, 200))
        );
        assert_eq!(page_range(Anchor::After(200), 20, 101, 200), None);
        assert_eq!(page_range(Anchor::Oldest, 20, 101, 200), Some((101, 120)));
        // An empty stream (first is last + 1).
        assert_eq!(page_range(Anchor::Oldest, 20, 1, 0), None);
        assert_eq!(page_range(Anchor::Before(5), 20, 1, 0), None);
    }
}
