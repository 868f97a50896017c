//! The frame decoder on arbitrary input: it never panics, and every request it encodes decodes back.

use ipckit::transport::frame::{
    decode_request, decode_server_frame, encode_line, NewEvent, ReplaySpec, Request,
};
use proptest::prelude::*;

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[a-z\\\\\"]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("NaN".to_owned()),
        Just("1e400".to_owned()),
        Just("\"\\ud800\"".to_owned()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("(type|id|event|events|filter|replay|sub|x)", inner), 0..5)
                .prop_map(|v| {
                    let fields: Vec<String> =
                        v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    let event = (
        "[a-z.]{1,12}",
        proptest::option::of("[a-z0-9-]{1,8}"),
        any::<i32>(),
    )
        .prop_map(|(event_type, resource_id, n)| NewEvent {
            id: None,
            timestamp: None,
            event_type,
            resource_id,
            data: serde_json::json!({ "n": n }),
        });
    let replay = prop_oneof![
        Just(ReplaySpec::None),
        Just(ReplaySpec::All),
        any::<u16>().prop_map(|n| ReplaySpec::Last(n as usize)),
        any::<u64>().prop_map(ReplaySpec::FromId),
    ];
    prop_oneof![
        (any::<u64>(), event.clone()).prop_map(|(id, event)| Request::Publish { id, event }),
        (any::<u64>(), prop::collection::vec(event, 0..4))
            .prop_map(|(id, events)| Request::PublishBatch { id, events }),
        (any::<u64>(), "[a-z.* !]{0,16}", replay).prop_map(|(id, filter, replay)| {
            Request::Subscribe {
                id,
                filter,
                replay,
                window: None,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, sub)| Request::Unsubscribe { id, sub }),
        any::<u64>().prop_map(|id| Request::Ping { id }),
        any::<u64>().prop_map(|id| Request::Stats { id }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_server_frame(&bytes);
    }

    #[test]
    fn json_shaped_input_never_panics_and_errors_name_a_code(text in json_text()) {
        if let Err(e) = decode_request(text.as_bytes()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn encoded_requests_decode_back(req in request()) {
        let mut line = Vec::new();
        encode_line(&mut line, &req);
        prop_assert_eq!(line.pop(), Some(b'\n'));
        prop_assert_eq!(decode_request(&line).unwrap(), req);
    }
}
