//! Times as counts since the Unix epoch, both ways: the one place the bus, its wire form, the store,
//! the data dir, NATS and the monitor convert a [`SystemTime`].
//!
//! Counts are negative before the epoch and cut toward it. Microseconds are the precision kept
//! everywhere: the store's rows and the data dir's records hold `i64` microseconds, and an `f64` of
//! today's epoch seconds (the JSON form) holds no finer digits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, negative before it.
pub fn to_secs(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The time `secs` seconds after (or before, if negative) the epoch, rounded to the microsecond (so
/// a second JSON round trip is exact); `None` for NaN, infinities and times no `SystemTime` holds.
pub fn from_secs(secs: f64) -> Option<SystemTime> {
    let micros = (secs.abs() * 1e6).round();
    if !micros.is_finite() || micros >= u64::MAX as f64 {
        return None;
    }
    offset(secs >= 0.0, Duration::from_micros(micros as u64))
}

/// `time` cut to the microsecond, toward the epoch: the precision the JSON form carries exactly, so
/// a time read from any event the bus holds survives a round trip through JSON unchanged.
pub fn cut_to_micros(time: SystemTime) -> SystemTime {
    let cut = |d: Duration| Duration::new(d.as_secs(), d.subsec_micros() * 1_000);
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => UNIX_EPOCH + cut(after),
        Err(before) => UNIX_EPOCH
            .checked_sub(cut(before.duration()))
            .unwrap_or(time),
    }
}

/// Microseconds since the epoch; `None` beyond what an `i64` holds (about 292,000 years either way).
pub fn micros(time: SystemTime) -> Option<i64> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i128::try_from(before.duration().as_micros())
            .ok()
            .and_then(|m| i64::try_from(-m).ok()),
    }
}

/// Microseconds since the epoch, clamped to the `i64` range (for bounds and sort keys).
pub fn micros_saturating(time: SystemTime) -> i64 {
    micros(time).unwrap_or(if time > UNIX_EPOCH {
        i64::MAX
    } else {
        i64::MIN
    })
}

/// The time `micros` microseconds after (or before, if negative) the epoch, if this platform's
/// `SystemTime` holds it.
pub fn from_micros(micros: i64) -> Option<SystemTime> {
    offset(micros >= 0, Duration::from_micros(micros.unsigned_abs()))
}

/// [`from_micros`], or the epoch itself where the platform cannot hold the time (for display).
pub fn from_micros_or_epoch(micros: i64) -> SystemTime {
    from_micros(micros).unwrap_or(UNIX_EPOCH)
}

/// Milliseconds since the epoch, clamped to the `i64` range.
pub fn millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

fn offset(after: bool, magnitude: Duration) -> Option<SystemTime> {
    if after {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// `#[serde(with = "crate::epoch::seconds")]`: a `SystemTime` as epoch seconds in an `f64`,
/// refusing values no `SystemTime` can hold.
pub mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    /// Writes [`super::to_secs`].
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(super::to_secs(*time))
    }

    /// Reads [`super::from_secs`].
    ///
    /// # Errors
    ///
    /// Not a number, or a time outside the representable range.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        super::from_secs(secs).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "timestamp {secs} is outside the representable range"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_are_cut_toward_the_epoch_and_negative_before_it() {
        let before = UNIX_EPOCH - Duration::from_nanos(1_500);
        assert_eq!(micros(before), Some(-1));
        assert_eq!(millis(before), 0);
        assert_eq!(micros(UNIX_EPOCH + Duration::from_nanos(1_999)), Some(1));
        assert_eq!(from_micros(-1), Some(UNIX_EPOCH - Duration::from_micros(1)));
        assert_eq!(millis(UNIX_EPOCH - Duration::from_millis(3)), -3);
        assert_eq!(cut_to_micros(before), UNIX_EPOCH - Duration::from_micros(1));
    }

    #[test]
    fn out_of_range_values_are_refused_or_clamped_never_wrapped() {
        assert_eq!(from_secs(f64::NAN), None);
        assert_eq!(from_secs(f64::INFINITY), None);
        assert_eq!(from_secs(1e30), None);
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)) {
            assert_eq!(micros(far), None);
            assert_eq!(micros_saturating(far), i64::MAX);
            assert_eq!(millis(far), i64::MAX);
        }
    }

    proptest! {
        #[test]
        fn micros_round_trip(m in any::<i64>()) {
            if let Some(time) = from_micros(m) {
                prop_assert_eq!(micros(time), Some(m));
                prop_assert_eq!(cut_to_micros(time), time);
            }
        }

        #[test]
        fn seconds_of_a_cut_time_round_trip(nanos in 0u64..4_000_000_000_000_000_000) {
            let time = cut_to_micros(UNIX_EPOCH + Duration::from_nanos(nanos));
            prop_assert_eq!(from_secs(to_secs(time)), Some(time));
        }
    }
}
