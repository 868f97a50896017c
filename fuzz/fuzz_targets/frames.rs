//! The frame decoder on arbitrary bytes, as a server or client reads them off a socket.
//!
//! Input: a read-buffer size, a line limit, then the stream. The line reader must split the stream
//! exactly as a plain split on `\n` does (lines over the limit reported with their length, a partial
//! last line reported as truncated), and every line goes through every decoder a peer's bytes reach:
//! requests (and the events they publish), server frames, the in-place event view and the filter
//! expression. None may panic; what decodes must encode and decode back to the same thing.
#![no_main]

use ipckit::transport::frame::{
    decode_request, decode_server_frame, encode_line, split_event_frame, LineReader, ReadLine,
    Request,
};
use ipckit::{EventFilter, EventRef};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// What reading `stream` with a line limit of `limit` must give, read by the plainest means.
fn expected(stream: &[u8], limit: usize) -> Vec<(ReadLine, &[u8])> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(at) => {
                let line = &rest[..at];
                out.push(if line.len() > limit {
                    (ReadLine::TooLong(line.len()), &[][..])
                } else {
                    (ReadLine::Line, line)
                });
                rest = &rest[at + 1..];
            }
            None => {
                out.push((ReadLine::Truncated(rest.len()), &[][..]));
                rest = &[];
            }
        }
    }
    out.push((ReadLine::Eof, &[][..]));
    out
}

fn decode_everything(line: &[u8]) {
    if let Ok(request) = decode_request(line) {
        let mut again = Vec::new();
        encode_line(&mut again, &request);
        let again = again.strip_suffix(b"\n").unwrap_or(&again);
        assert_eq!(
            decode_request(again).as_ref(),
            Ok(&request),
            "re-encoded request"
        );
        match request {
            Request::Publish { event, .. } => {
                let _ = event.into_event();
            }
            Request::PublishBatch { events, .. } => {
                for event in events {
                    let _ = event.into_event();
                }
            }
            _ => {}
        }
    }
    let _ = decode_server_frame(line);
    if let Some((_, body)) = split_event_frame(line) {
        if let Ok(text) = std::str::from_utf8(body) {
            if let Ok(view) = EventRef::parse(text) {
                // The view checks the data's syntax only; parsing it can still refuse a number
                // serde_json cannot hold (`1e999`), and nothing else.
                if let Err(e) = view.to_event() {
                    assert!(
                        e.to_string().contains("number out of range"),
                        "a view that parses converts: {text}: {e}"
                    );
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(line) {
        if let Ok(filter) = EventFilter::parse(text) {
            let shown = filter.to_string();
            assert_eq!(
                EventFilter::parse(&shown).as_ref(),
                Ok(&filter),
                "{text} -> {shown}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [capacity, limit, stream @ ..] = data else {
        return;
    };
    let capacity = usize::from(*capacity % 64) + 1;
    let limit = usize::from(*limit) * 8 + 1;
    let want = expected(stream, limit);
    runtime().block_on(async {
        let mut reader =
            LineReader::new(tokio::io::BufReader::with_capacity(capacity, stream), limit);
        let mut line = Vec::new();
        for (kind, text) in want {
            let got = reader
                .read_line(&mut line)
                .await
                .expect("reading a slice cannot fail");
            assert_eq!(got, kind);
            if got == ReadLine::Line {
                assert_eq!(line, text);
                decode_everything(&line);
            }
        }
    });
});
