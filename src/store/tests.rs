//! The store's behaviour: exact bounds, blocks and strings freed, reads and scans that agree with the
//! events pushed and with `EventFilter::matches`.

use super::*;
use crate::event_stream::{EventFilter, Glob, Term};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

fn config(max_events: usize, block_events: usize) -> StoreConfig {
    StoreConfig {
        block_events,
        ..StoreConfig::new(max_events)
    }
}

fn event(id: u64, event_type: &str, resource: Option<&str>, data: Value) -> Event {
    Event {
        id,
        timestamp: UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + id * 1_000),
        event_type: event_type.to_owned(),
        resource_id: resource.map(str::to_owned),
        data,
    }
}

/// Pushes `event`, running any compression job at once.
fn push(store: &mut Store, event: &Event) -> Pos {
    let pushed = store.push_event(event).unwrap();
    if let Some(job) = pushed.job {
        store.install(job.run());
    }
    pushed.pos
}

/// Incompressible text: letters from a xorshift generator.
fn noise(len: usize) -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn ids(store: &Store) -> Vec<u64> {
    store.range().filter_map(|p| store.id_at(p)).collect()
}

fn all_events(store: &Store) -> Vec<Event> {
    let one_by_one: Vec<Event> = store.range().filter_map(|p| store.event(p)).collect();
    assert_eq!(
        store.events(0..Pos::MAX),
        one_by_one,
        "a range reads the same"
    );
    one_by_one
}

#[test]
fn the_count_bound_is_exact_and_whole_blocks_are_freed() {
    let mut store = Store::new(config(10, 4));
    for id in 1..=25 {
        push(&mut store, &event(id, "a", Some("r"), json!({ "n": id })));
    }
    assert_eq!(store.len(), 10);
    assert_eq!(store.range(), 15..25);
    assert_eq!(ids(&store), (16..=25).collect::<Vec<_>>());
    // Positions 15..25 lie in the blocks [12, 16), [16, 20), [20, 24) and the open [24, 25).
    assert_eq!(store.stats().blocks, 4);
    assert_eq!(store.event(14), None, "evicted");
    assert_eq!(store.event(15).map(|e| e.data), Some(json!({"n": 16})));
    assert_eq!(
        store.stats().compressed_events,
        9,
        "the sealed blocks' kept events"
    );
}

#[test]
fn a_store_of_zero_keeps_nothing_and_positions_go_on() {
    let mut store = Store::new(StoreConfig::new(0));
    assert_eq!(push(&mut store, &event(1, "a", None, json!(1))), 0);
    assert_eq!(push(&mut store, &event(2, "a", None, json!(1))), 1);
    assert!(store.is_empty());
    assert_eq!(store.event(1), None);
}

#[test]
fn strings_no_kept_event_uses_are_forgotten() {
    let mut store = Store::new(config(100, 16));
    for id in 1..=10_000u64 {
        let job = format!("job-{id}");
        push(
            &mut store,
            &event(id, &format!("type.{}", id % 3), Some(&job), json!(null)),
        );
    }
    let stats = store.stats();
    assert_eq!(
        stats.resources, 100,
        "one per kept event, not one per event ever seen"
    );
    assert_eq!(stats.types, 3);
    assert!(
        store.resources.id_bound() <= 100 + 16,
        "ids are reused: {}",
        store.resources.id_bound()
    );
}

#[test]
fn the_byte_bound_drops_whole_old_blocks() {
    let big = noise(10_000);
    let mut store = Store::new(StoreConfig {
        max_bytes: 200_000,
        block_bytes: 32_000,
        ..config(1_000, 64)
    });
    for id in 1..=100 {
        push(
            &mut store,
            &event(id, "a", None, json!({ "pad": big, "n": id })),
        );
        assert!(
            store.bytes() <= 200_000,
            "{} bytes after {id}",
            store.bytes()
        );
    }
    let kept = ids(&store);
    assert!(kept.len() >= 10, "{kept:?}");
    assert_eq!(kept.last(), Some(&100), "the newest are kept");
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn one_huge_event_costs_its_size_once_and_goes_with_its_block() {
    let huge = noise(4 << 20);
    let mut store = Store::new(config(100, 64));
    push(&mut store, &event(1, "big", None, json!(huge)));
    let with_huge = store.bytes();
    assert!(with_huge > 4 << 20);
    for id in 2..=300 {
        push(&mut store, &event(id, "a", None, json!({ "n": id })));
        assert!(store.bytes() < with_huge + (64 << 10), "{}", store.bytes());
    }
    assert!(
        store.bytes() < 200 << 10,
        "the huge event's block and buffer are gone: {} bytes",
        store.bytes()
    );
    // Larger than the whole budget: delivered to no one here, kept by no one.
    let mut small = Store::new(StoreConfig {
        max_bytes: 1 << 20,
        ..config(100, 64)
    });
    push(&mut small, &event(1, "a", None, json!(1)));
    push(&mut small, &event(2, "big", None, json!(huge)));
    push(&mut small, &event(3, "a", None, json!(3)));
    assert_eq!(ids(&small), [3]);
    assert!(small.bytes() <= 1 << 20);
}

#[test]
fn sealed_blocks_are_compressed_by_the_job_and_read_the_same() {
    let mut store = Store::new(config(10_000, 128));
    let events: Vec<Event> = (1..=1_000)
        .map(|id| {
            event(
                id,
                "log.stdout",
                Some("job-1"),
                json!({"message": format!("frame {id} rendered in {}.{}s", id % 7, id % 10)}),
            )
        })
        .collect();
    let mut jobs = Vec::new();
    for e in &events {
        let pushed = store.push_event(e).unwrap();
        jobs.extend(pushed.job);
    }
    assert_eq!(jobs.len(), 7, "one per sealed block");
    assert_eq!(
        store.stats().compressed_events,
        0,
        "not before the jobs are installed"
    );
    assert_eq!(all_events(&store), events, "readable while compressing");
    let before = store.bytes();
    for job in jobs {
        store.install(job.run());
    }
    assert_eq!(store.stats().compressed_events, 896);
    assert!(store.bytes() < before, "{} -> {}", before, store.bytes());
    assert_eq!(all_events(&store), events);
}

#[test]
fn hot_events_stay_uncompressed() {
    let mut store = Store::new(StoreConfig {
        hot_events: 300,
        ..config(10_000, 100)
    });
    for id in 1..=1_000 {
        push(&mut store, &event(id, "a", None, json!({ "n": id })));
    }
    // Blocks entirely older than the newest 300 events: [0, 700).
    assert_eq!(store.stats().compressed_events, 700);
    let mut never = Store::new(StoreConfig {
        hot_events: usize::MAX,
        ..config(10_000, 100)
    });
    for id in 1..=1_000 {
        push(&mut never, &event(id, "a", None, json!({ "n": id })));
    }
    assert_eq!(never.stats().compressed_events, 0);
}

#[test]
fn a_job_for_an_evicted_block_is_ignored() {
    let mut store = Store::new(config(8, 4));
    let mut jobs = Vec::new();
    for id in 1..=20 {
        let data = json!({"message": "the same words again and again and again", "n": id});
        jobs.extend(store.push_event(&event(id, "a", None, data)).unwrap().job);
    }
    for job in jobs {
        store.install(job.run());
    }
    assert_eq!(ids(&store), (13..=20).collect::<Vec<_>>());
    assert_eq!(all_events(&store).len(), 8);
}

#[test]
fn the_json_form_is_written_from_the_row_and_payload() {
    let mut store = Store::new(config(100, 4));
    let events = [
        event(
            1,
            "task.\"q\"",
            Some("job\n1"),
            json!({"m": "caf\u{e9} \u{1}", "f": 2.5}),
        ),
        event(2, "a", None, json!(null)),
        event(3, "b", Some("r"), json!([1, {"x": -0.0}, 1e300])),
    ];
    for e in &events {
        push(&mut store, e);
    }
    for (pos, e) in store.range().zip(&events) {
        let mut out = Vec::new();
        assert!(store.write_json(pos, &mut out).unwrap());
        assert_eq!(out, serde_json::to_vec(e).unwrap());
    }
    assert!(!store.write_json(99, &mut Vec::new()).unwrap());
}

#[test]
fn ids_are_found_by_binary_search() {
    let mut store = Store::new(config(50, 8));
    for id in (1..=200).map(|i| i * 2) {
        push(&mut store, &event(id, "a", None, json!(1)));
    }
    // Kept: ids 302..=400, step 2, at positions 150..200.
    assert_eq!(store.find_id(302), Some(150));
    assert_eq!(store.find_id(400), Some(199));
    assert_eq!(store.find_id(301), None);
    assert_eq!(store.lower_bound_id(301), 150);
    assert_eq!(store.lower_bound_id(303), 151);
    assert_eq!(store.lower_bound_id(1), 150);
    assert_eq!(store.lower_bound_id(401), 200);
}

#[test]
fn clearing_keeps_positions_going_and_filters_notice_new_strings() {
    let mut store = Store::new(config(100, 8));
    for id in 1..=20 {
        push(&mut store, &event(id, "keep", Some("a"), json!(1)));
    }
    let mut filter = StoreFilter::new(&EventFilter::new().event_type("keep"));
    assert_eq!(store.count(&mut filter, store.range()), 20);
    drop(store.clear());
    assert!(store.is_empty());
    assert_eq!(store.range(), 20..20);
    // The same interned ids now name other strings: the filter's cached verdicts must not carry over.
    for id in 21..=30 {
        push(&mut store, &event(id, "other", Some("b"), json!(1)));
    }
    assert_eq!(store.count(&mut filter, store.range()), 0);
    assert_eq!(store.range(), 20..30);
}

#[test]
fn a_filter_kept_across_evictions_notices_reused_ids() {
    let mut store = Store::new(config(4, 2));
    let mut filter = StoreFilter::new(&EventFilter::new().resource("job-1"));
    let mut matched = Vec::new();
    for id in 1..=40u64 {
        push(
            &mut store,
            &event(id, "a", Some(&format!("job-{}", id % 10)), json!(id)),
        );
        let mut out = Vec::new();
        let _ = store.scan(
            &mut filter,
            store.range(),
            Order::OldestFirst,
            usize::MAX,
            &mut out,
        );
        matched.extend(out.iter().filter_map(|&p| store.id_at(p)));
    }
    matched.sort_unstable();
    matched.dedup();
    assert_eq!(matched, [1, 11, 21, 31]);
}

#[test]
fn scans_go_in_slices_newest_first_and_resume() {
    let mut store = Store::new(config(1_000, 16));
    for id in 1..=100 {
        push(
            &mut store,
            &event(
                id,
                if id % 3 == 0 { "hit" } else { "miss" },
                None,
                json!(id),
            ),
        );
    }
    let mut filter = StoreFilter::new(&EventFilter::new().event_type("hit"));
    let mut got = Vec::new();
    let mut left = store.range();
    let mut calls = 0;
    while !left.is_empty() {
        left = store.scan(&mut filter, left, Order::NewestFirst, 7, &mut got);
        calls += 1;
    }
    assert_eq!(calls, 5, "33 hits, 7 at a time");
    let expected: Vec<Pos> = (0..100).rev().filter(|p| (p + 1) % 3 == 0).collect();
    assert_eq!(got, expected);
    // In slices of rows instead: the same hits, oldest first.
    let mut sliced = Vec::new();
    for start in (0..100).step_by(30) {
        let left = store.scan(
            &mut filter,
            start..start + 30,
            Order::OldestFirst,
            usize::MAX,
            &mut sliced,
        );
        assert!(left.is_empty());
    }
    sliced.reverse();
    assert_eq!(sliced, expected);
    assert_eq!(store.count(&mut filter, 0..1_000), 33);
    assert_eq!(
        store.count(&mut filter, 50..60),
        4,
        "positions 50, 53, 56, 59"
    );
}

#[test]
fn text_search_finds_escapes_case_and_non_ascii() {
    let mut store = Store::new(config(1_000, 4));
    let datas = [
        json!({"note": "Disk SLOW on n-3"}),
        json!({"q": "say \"hi\""}),
        json!({"path": "C:\\Temp\\X"}),
        json!({"m": "line one\nline two"}),
        json!({"m": "CAF\u{c9} cr\u{e8}me"}),
        json!({"\u{c9}T\u{c9}": [1.5, null, true]}),
        json!({"m": "\u{130}STANBUL"}),
        json!({"m": "plain"}),
    ];
    for (i, data) in datas.iter().enumerate() {
        push(
            &mut store,
            &event(i as u64 + 1, "log.info", Some("r"), data.clone()),
        );
    }
    let hits = |expr: &str| -> Vec<u64> {
        let filter = EventFilter::parse(expr).unwrap();
        let mut compiled = StoreFilter::new(&filter);
        let mut out = Vec::new();
        let _ = store.scan(
            &mut compiled,
            store.range(),
            Order::OldestFirst,
            usize::MAX,
            &mut out,
        );
        let found: Vec<u64> = out.iter().filter_map(|&p| store.id_at(p)).collect();
        let expected: Vec<u64> = all_events(&store)
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.id)
            .collect();
        assert_eq!(found, expected, "{expr}");
        found
    };
    assert_eq!(hits(r#"text:"disk slow""#), [1]);
    assert_eq!(hits(r#"text:"\"hi\"""#), [2]);
    assert_eq!(hits(r#"text:"\\temp\\""#), [3]);
    assert_eq!(hits("text:caf\u{e9}"), [5]);
    assert_eq!(hits("text:\u{e9}t\u{e9}"), [6]);
    assert_eq!(hits("text:1.5"), [6]);
    assert_eq!(hits("text:null"), [6]);
    assert_eq!(hits("text:i\u{307}stanbul"), [7]);
    assert_eq!(
        hits("!text:line text:l"),
        [1, 6, 7, 8],
        "slow, null, istanbul, plain"
    );
    assert_eq!(hits("text:note text:path"), [1, 3]);
    assert_eq!(
        hits(r#"text:"\":\"""#),
        Vec::<u64>::new(),
        "JSON syntax is not text"
    );
}

#[test]
fn a_term_the_compiler_does_not_know_is_left_to_matches() {
    // Until a data-field term exists, an unrepresentable time bound takes the same path.
    let far = UNIX_EPOCH + Duration::from_secs(1 << 62);
    let filter = EventFilter::new().until(far);
    let compiled = StoreFilter::new(&filter);
    assert!(compiled.opaque && compiled.needs_data());
    let mut store = Store::new(config(10, 4));
    push(&mut store, &event(1, "a", None, json!(1)));
    assert_eq!(
        store.count(&mut StoreFilter::new(&filter), store.range()),
        1
    );
}

// Random events and filters: a scan finds exactly what `matches` finds.

fn arb_event() -> impl Strategy<Value = Event> {
    let types = prop::sample::select(vec![
        "task.started",
        "task.progress",
        "log.stdout",
        "log.stderr",
        "mcp.notifications.progress",
        "file.upload.progress",
    ]);
    let resources = prop::option::of(prop::sample::select(vec![
        "job-1",
        "job-2",
        "job-10",
        "render-7",
        "tok-ab",
        "\u{e9}t\u{e9}",
    ]));
    let text = "[a-zA-Z0-9 \"\\\\\n\u{e9}\u{c9}\u{212a}\u{130}]{0,12}";
    let data = prop_oneof![
        text.prop_map(|t| json!({ "message": t })),
        (any::<i32>(), any::<bool>()).prop_map(|(n, b)| json!({ "frame": n, "ok": b, "n": null })),
        (text, -1e6f64..1e6).prop_map(|(k, f)| json!({ k: [f, "Disk SLOW"] })),
    ];
    (1u64..500, types, resources, data, -5i64..5).prop_map(|(id, t, r, data, dt)| {
        let mut e = event(id, t, r, data);
        e.timestamp =
            UNIX_EPOCH + Duration::from_micros((1_700_000_000_000_000i64 + dt * 1_000) as u64);
        e
    })
}

fn arb_filter() -> impl Strategy<Value = EventFilter> {
    let glob = prop::sample::select(vec![
        "task.*",
        "log.std???",
        "*progress",
        "task.started",
        "mcp.*",
        "job-1*",
        "job-?",
        "*",
        "render-7",
        "\u{e9}*",
    ]);
    let word = "[a-zA-Z0-9 \"\n\u{e9}\u{c9}k]{0,4}";
    let term = prop_oneof![
        glob.clone().prop_map(|g| Term::Type(Glob::new(g))),
        glob.prop_map(|g| Term::Resource(Glob::new(g))),
        word.prop_map(|w| Term::Text(w.to_lowercase())),
        (0u64..500).prop_map(|id| Term::Since(Bound::Id(id))),
        (0u64..500).prop_map(|id| Term::Until(Bound::Id(id))),
        (-5i64..5).prop_map(|dt| Term::Since(Bound::Time(
            UNIX_EPOCH + Duration::from_micros((1_700_000_000_000_000i64 + dt * 1_000) as u64)
        ))),
    ];
    prop::collection::vec((any::<bool>(), term), 0..4).prop_map(|terms| {
        let mut filter = EventFilter::new();
        for (positive, term) in terms {
            filter = if positive {
                match term {
                    Term::Type(g) => filter.event_type(g.as_str()),
                    Term::Resource(g) => filter.resource(g.as_str()),
                    Term::Text(t) => filter.text(&t),
                    Term::Since(Bound::Id(id)) => filter.since_id(id),
                    Term::Until(Bound::Id(id)) => filter.until_id(id),
                    Term::Since(Bound::Time(t)) => filter.since(t),
                    other => filter.exclude(other),
                }
            } else {
                filter.exclude(term)
            };
        }
        filter
    })
}

use crate::event_stream::Bound;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_scan_finds_what_matches_finds(
        events in prop::collection::vec(arb_event(), 1..60),
        filters in prop::collection::vec(arb_filter(), 1..4),
        block_events in 1usize..9,
        hot in prop::sample::select(vec![0usize, 5, usize::MAX]),
    ) {
        let mut store = Store::new(StoreConfig {
            hot_events: hot,
            ..config(40, block_events)
        });
        for e in &events {
            push(&mut store, e);
        }
        let kept: Vec<Event> = events[events.len().saturating_sub(40)..].to_vec();
        prop_assert_eq!(&all_events(&store), &kept);
        for filter in &filters {
            let mut compiled = StoreFilter::new(filter);
            let mut out = Vec::new();
            let _ = store.scan(&mut compiled, store.range(), Order::NewestFirst, usize::MAX, &mut out);
            out.reverse();
            let expected: Vec<Pos> = store
                .range()
                .zip(&kept)
                .filter(|(_, e)| filter.matches(e))
                .map(|(p, _)| p)
                .collect();
            prop_assert_eq!(out, expected, "{}", filter);
        }
    }
}

/// A store can be shared (behind a lock) and its jobs sent to other threads.
#[test]
fn the_store_and_its_jobs_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StoreFilter>();
    assert_send::<CompressJob>();
    assert_send::<Compressed>();
    let mut store = Store::new(config(100, 4));
    let mut jobs = Vec::new();
    for id in 1..=10 {
        let data = json!({"message": "the same words again and again and again", "n": id});
        jobs.extend(store.push_event(&event(id, "a", None, data)).unwrap().job);
    }
    let done: Vec<Compressed> =
        std::thread::spawn(move || jobs.into_iter().map(CompressJob::run).collect())
            .join()
            .unwrap();
    for d in done {
        store.install(d);
    }
    assert_eq!(store.stats().compressed_events, 8);
    assert_eq!(all_events(&store).len(), 10);
}
