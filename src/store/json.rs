//! An event's parts as the store holds them, back to an [`Event`] or straight to its JSON form.

use crate::epoch;
use crate::event_stream::{Event, EventId};
use std::io::{self, Write};
use std::time::SystemTime;

/// One event in the form the store keeps it: the row's fields and the data as compact JSON bytes
/// (what `serde_json::to_writer(&event.data)` writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventParts<'a> {
    /// The event's id.
    pub id: EventId,
    /// When it happened, in microseconds since the Unix epoch (negative before it).
    pub time_micros: i64,
    /// Its type.
    pub event_type: &'a str,
    /// Its resource id, if any.
    pub resource: Option<&'a str>,
    /// Its data as compact JSON.
    pub data: &'a [u8],
}

impl<'a> EventParts<'a> {
    /// The parts of `event`, its data serialized into `buf` (cleared first), its time cut to the
    /// microsecond (toward the epoch) and, beyond ±292,000 years of the epoch, clamped.
    pub fn of(event: &'a Event, buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        // Writing a `Value` to a `Vec` cannot fail: every number in a `Value` is finite.
        if serde_json::to_writer(&mut *buf, &event.data).is_err() {
            buf.clear();
            buf.extend_from_slice(b"null");
        }
        Self {
            id: event.id,
            time_micros: epoch::micros_saturating(event.timestamp),
            event_type: &event.event_type,
            resource: event.resource_id.as_deref(),
            data: buf,
        }
    }

    /// The event's time.
    pub fn timestamp(&self) -> SystemTime {
        epoch::from_micros_or_epoch(self.time_micros)
    }

    /// The owned event, its data parsed.
    ///
    /// # Errors
    ///
    /// When the data bytes are not JSON a `serde_json::Value` can hold (never for bytes the store
    /// took from an [`Event`]).
    pub fn to_event(&self) -> Result<Event, serde_json::Error> {
        Ok(Event {
            id: self.id,
            timestamp: self.timestamp(),
            event_type: self.event_type.to_owned(),
            resource_id: self.resource.map(str::to_owned),
            data: parse_data(self.data)?,
        })
    }

    /// Writes the event's JSON form, byte for byte what `serde_json::to_writer(&event)` writes for
    /// the [`Event`] these parts stand for, without building that event.
    ///
    /// # Errors
    ///
    /// What `out` returns.
    pub fn write_json<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        out.write_all(b"{\"id\":")?;
        serde_json::to_writer(&mut *out, &self.id).map_err(io::Error::other)?;
        out.write_all(b",\"timestamp\":")?;
        let secs = crate::epoch::to_secs(self.timestamp());
        serde_json::to_writer(&mut *out, &secs).map_err(io::Error::other)?;
        out.write_all(b",\"event_type\":")?;
        serde_json::to_writer(&mut *out, self.event_type).map_err(io::Error::other)?;
        out.write_all(b",\"resource_id\":")?;
        match self.resource {
            Some(resource) => {
                serde_json::to_writer(&mut *out, resource).map_err(io::Error::other)?
            }
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"data\":")?;
        out.write_all(self.data)?;
        out.write_all(b"}")
    }
}

/// Parses data bytes; a structure nested deeper than serde_json's default limit (128), which a
/// `Value` built in memory may be, is parsed again without the limit, so whatever was stored decodes.
pub(crate) fn parse_data(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(err) if err.to_string().starts_with("recursion limit exceeded") => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            de.disable_recursion_limit();
            let value = serde::Deserialize::deserialize(&mut de)?;
            de.end()?;
            Ok(value)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::time::{Duration, UNIX_EPOCH};

    fn parts_json(event: &Event) -> Vec<u8> {
        let mut data = Vec::new();
        let parts = EventParts::of(event, &mut data);
        let mut out = Vec::new();
        parts.write_json(&mut out).unwrap();
        out
    }

    #[test]
    fn the_writer_matches_serde_json_on_awkward_events() {
        let mut event = Event::with_resource(
            "task.\"quoted\"\\\u{1}\u{7f}",
            "job\n\u{e9}\u{1F600}",
            json!({"b": [1, -0.0, 1e300, 2.5e-8, u64::MAX, i64::MIN, null, true], "a": "\u{0}\t\"\\/"}),
        );
        for (id, micros) in [
            (1u64, 1_732_500_000_123_456i64),
            (u64::MAX, 0),
            (7, -1_500),
            (9, -62_135_596_800_000_000),
            (10, 253_402_300_799_999_999),
        ] {
            event.id = id;
            event.timestamp = epoch::from_micros_or_epoch(micros);
            assert_eq!(
                String::from_utf8(parts_json(&event)).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
        }
        event.resource_id = None;
        event.data = Value::Null;
        assert_eq!(parts_json(&event), serde_json::to_vec(&event).unwrap());
    }

    #[test]
    fn times_convert_both_ways() {
        for micros in [
            0i64,
            1,
            -1,
            1_732_500_000_123_456,
            -86_400_000_000,
            i64::MAX / 2,
        ] {
            assert_eq!(
                epoch::micros_saturating(epoch::from_micros_or_epoch(micros)),
                micros
            );
        }
        let nanos = UNIX_EPOCH + Duration::from_nanos(1_999);
        assert_eq!(epoch::micros_saturating(nanos), 1, "cut toward the epoch");
        let before = UNIX_EPOCH - Duration::from_nanos(1_999);
        assert_eq!(epoch::micros_saturating(before), -1, "cut toward the epoch");
    }

    #[test]
    fn data_nested_deeper_than_serde_jsons_limit_decodes() {
        let mut value = json!(1);
        for _ in 0..300 {
            value = json!([value]);
        }
        let bytes = serde_json::to_vec(&value).unwrap();
        assert!(
            serde_json::from_slice::<Value>(&bytes).is_err(),
            "the default parser refuses it"
        );
        assert_eq!(parse_data(&bytes).unwrap(), value);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The JSON writer gives serde_json's bytes exactly, and the parts decode to the event.
        #[test]
        fn the_writer_is_serde_json(
            id in any::<u64>(),
            micros in -4_000_000_000_000_000i64..4_000_000_000_000_000,
            event_type in any::<String>(),
            resource in proptest::option::of(any::<String>()),
            data in arb_json(),
        ) {
            let event = Event {
                id,
                timestamp: epoch::from_micros_or_epoch(micros),
                event_type,
                resource_id: resource,
                data,
            };
            prop_assert_eq!(parts_json(&event), serde_json::to_vec(&event).unwrap());
            let mut buf = Vec::new();
            let back = EventParts::of(&event, &mut buf).to_event().unwrap();
            prop_assert_eq!(back, event);
        }
    }
}
