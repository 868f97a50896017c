//! Data-field filter terms (`frame>89 node=n-1`) through a real bus: live subscribers, whose filters the
//! bus indexes by exact type or resource, and history queries, over packed and hot history alike.

use ipckit::{Event, EventBus, EventBusConfig, EventFilter, Replay};
use serde_json::json;

/// 100 events of known data: the `i`th has `frame` `i`, and `node` `n-{i % 3}` unless `i` is a multiple
/// of 10; they alternate between two types and carry resource `job-{i % 2}`.
fn publish_frames(bus: &EventBus) {
    for i in 0..100u64 {
        let data = if i % 10 == 0 {
            json!({"frame": i, "job": {"id": i}})
        } else {
            json!({"frame": i, "node": format!("n-{}", i % 3), "job": {"id": i}})
        };
        let event_type = if i % 2 == 0 {
            "render.frame"
        } else {
            "render.tile"
        };
        bus.publish(Event::with_resource(
            event_type,
            &format!("job-{}", i % 2),
            data,
        ));
    }
}

fn frames(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.data["frame"].as_u64().unwrap())
        .collect()
}

/// Each filter with the frames it must select, in order.
fn cases() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        // The acceptance case.
        ("frame>89 node=n-1", vec![91, 94, 97]),
        ("node=n-1 node=n-2 frame>89", vec![91, 92, 94, 95, 97, 98]),
        ("frame<3 frame>=98", vec![0, 1, 2, 98, 99]),
        ("frame>=90 !frame>=93", vec![90, 91, 92]),
        ("!node=* frame>=50", vec![50, 60, 70, 80, 90]),
        ("node!=n-0 node!=n-1 frame>80", vec![83, 86, 89, 92, 95, 98]),
        // Indexed by exact type or resource: the field term must still be tested.
        ("type:render.frame frame>89", vec![90, 92, 94, 96, 98]),
        ("res:job-1 frame>89 node=n-1", vec![91, 97]),
        ("render.tile job.id<=5", vec![1, 3, 5]),
        (
            "render.frame !node=*",
            vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90],
        ),
    ]
}

#[test]
fn live_subscribers_receive_exactly_the_matching_events() {
    let bus = EventBus::new(EventBusConfig::default());
    let subscribers: Vec<_> = cases()
        .into_iter()
        .map(|(expr, want)| (expr, want, bus.subscribe(EventFilter::parse(expr).unwrap())))
        .collect();
    publish_frames(&bus);
    for (expr, want, subscriber) in subscribers {
        let got: Vec<Event> = subscriber.try_iter().collect();
        assert_eq!(frames(&got), want, "{expr}");
        assert_eq!(subscriber.dropped(), 0, "{expr}");
    }
}

#[test]
fn history_and_replay_select_the_same_events_packed_or_hot() {
    for hot_history in [8, usize::MAX] {
        let bus = EventBus::new(EventBusConfig {
            history_size: 1_000,
            hot_history,
            ..Default::default()
        });
        publish_frames(&bus);
        for (expr, want) in cases() {
            let filter = EventFilter::parse(expr).unwrap();
            assert_eq!(frames(&bus.history(&filter)), want, "history {expr}");
            let replayed: Vec<Event> = bus
                .subscribe_with_replay(filter, Replay::All)
                .try_iter()
                .collect();
            assert_eq!(frames(&replayed), want, "replay {expr}");
        }
    }
}

#[test]
fn a_filter_shown_and_parsed_again_selects_the_same_events() {
    let bus = EventBus::new(EventBusConfig::default());
    publish_frames(&bus);
    for (expr, want) in cases() {
        let shown = EventFilter::parse(expr).unwrap().to_string();
        let again = EventFilter::parse(&shown).unwrap();
        assert_eq!(
            frames(&bus.history(&again)),
            want,
            "{expr} shown as {shown}"
        );
    }
}
