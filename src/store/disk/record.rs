//! What one stored record holds, borrowed ([`RecordRef`]) or owned ([`Record`]), and the conversions
//! to and from an [`Event`].

use super::DiskError;
use crate::epoch;
use crate::event_stream::Event;

/// One record as it is written and read: an event with its data kept as compact JSON bytes.
///
/// Reading a data dir hands these out borrowed from the segment files' memory maps, so a reader that
/// only forwards or filters records copies nothing; [`RecordRef::to_event`] parses the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The event's id (records are stored in increasing id order).
    pub id: u64,
    /// When the event was created, in microseconds since the Unix epoch (negative before it).
    pub time_micros: i64,
    /// The event's type.
    pub event_type: &'a str,
    /// The event's resource, if it has one.
    pub resource: Option<&'a str>,
    /// The event's `data` as JSON text (compact, as `serde_json::to_vec` writes it).
    pub data: &'a [u8],
}

/// An owned [`RecordRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event's id.
    pub id: u64,
    /// When the event was created, in microseconds since the Unix epoch.
    pub time_micros: i64,
    /// The event's type.
    pub event_type: String,
    /// The event's resource, if it has one.
    pub resource: Option<String>,
    /// The event's `data` as JSON text.
    pub data: Vec<u8>,
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            id: self.id,
            time_micros: self.time_micros,
            event_type: self.event_type.to_owned(),
            resource: self.resource.map(str::to_owned),
            data: self.data.to_vec(),
        }
    }

    /// The event, its data parsed.
    ///
    /// # Errors
    ///
    /// [`DiskError::BadData`] when the data is not JSON a `serde_json::Value` holds (never for a record
    /// made by [`Record::from_event`]), [`DiskError::TimeOutOfRange`] for a time no `SystemTime` holds.
    pub fn to_event(&self) -> Result<Event, DiskError> {
        Ok(Event {
            id: self.id,
            timestamp: epoch::from_micros(self.time_micros).ok_or(DiskError::TimeOutOfRange)?,
            event_type: self.event_type.to_owned(),
            resource_id: self.resource.map(str::to_owned),
            data: serde_json::from_slice(self.data).map_err(DiskError::BadData)?,
        })
    }
}

impl Record {
    /// The record of `event`: its data written as compact JSON, its time cut to the microsecond
    /// (toward the epoch, as the bus already cuts the times it stamps).
    ///
    /// # Errors
    ///
    /// [`DiskError::TimeOutOfRange`] for a time more than about 292,000 years from the epoch.
    pub fn from_event(event: &Event) -> Result<Record, DiskError> {
        Ok(Record {
            id: event.id,
            time_micros: epoch::micros(event.timestamp).ok_or(DiskError::TimeOutOfRange)?,
            event_type: event.event_type.clone(),
            resource: event.resource_id.clone(),
            data: serde_json::to_vec(&event.data).map_err(DiskError::BadData)?,
        })
    }

    /// The borrowed view, as [`DataDir::append`](super::DataDir::append) takes it.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            id: self.id,
            time_micros: self.time_micros,
            event_type: &self.event_type,
            resource: self.resource.as_deref(),
            data: &self.data,
        }
    }

    /// The event, its data parsed; see [`RecordRef::to_event`].
    ///
    /// # Errors
    ///
    /// As [`RecordRef::to_event`].
    pub fn to_event(&self) -> Result<Event, DiskError> {
        self.as_ref().to_event()
    }
}

impl TryFrom<&Event> for Record {
    type Error = DiskError;

    fn try_from(event: &Event) -> Result<Record, DiskError> {
        Record::from_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn an_event_survives_the_round_trip() {
        let mut event =
            Event::with_resource("task.progress", "job-7", json!({"frame": 3, "s": "é"}));
        event.id = 41;
        event.timestamp = UNIX_EPOCH + Duration::from_nanos(1_732_500_000_123_456_789);
        let record = Record::from_event(&event).unwrap();
        assert_eq!(record.time_micros, 1_732_500_000_123_456);
        assert_eq!(record.data, r#"{"frame":3,"s":"é"}"#.as_bytes());
        let back = record.to_event().unwrap();
        assert_eq!(back.data, event.data);
        assert_eq!(back.resource_id.as_deref(), Some("job-7"));
        assert_eq!(
            back.timestamp,
            UNIX_EPOCH + Duration::from_micros(1_732_500_000_123_456)
        );
        assert_eq!(record.as_ref().to_record(), record);
    }

    #[test]
    fn times_before_the_epoch_and_out_of_range_are_handled() {
        let before = UNIX_EPOCH - Duration::from_nanos(1_500);
        assert_eq!(epoch::micros(before), Some(-1));
        assert_eq!(
            epoch::from_micros(-1),
            Some(UNIX_EPOCH - Duration::from_micros(1))
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(epoch::micros(far), None);
        let mut event = Event::new("a", json!(null));
        event.timestamp = far;
        assert!(matches!(
            Record::from_event(&event),
            Err(DiskError::TimeOutOfRange)
        ));
        for micros in [i64::MIN, i64::MAX, 0] {
            let time = epoch::from_micros(micros).unwrap();
            assert_eq!(epoch::micros(time), Some(micros));
        }
    }

    #[test]
    fn data_that_is_not_json_is_an_error_not_a_panic() {
        let record = RecordRef {
            id: 1,
            time_micros: 0,
            event_type: "a",
            resource: None,
            data: b"{not json",
        };
        assert!(matches!(record.to_event(), Err(DiskError::BadData(_))));
    }
}
