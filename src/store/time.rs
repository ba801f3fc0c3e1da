//! Time: the one representation used by manifests' consumers, container inodes and
//! records (seconds and nanoseconds since the epoch, times before 1970 included).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time, seconds and nanoseconds since the epoch. `nsec` is always
/// below 1e9, so the derived ordering (sec, then nsec) is chronological.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

impl Time {
    /// The current time (the epoch if the clock is set before it).
    pub fn now() -> Time {
        Time::from_system(SystemTime::now())
    }

    /// A `SystemTime` as a `Time`.
    pub fn from_system(t: SystemTime) -> Time {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Time {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Time {
                        sec: -(d.as_secs() as i64),
                        nsec: 0,
                    }
                } else {
                    Time {
                        sec: -(d.as_secs() as i64) - 1,
                        nsec: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// This time as a `SystemTime`.
    pub fn to_system(self) -> SystemTime {
        if self.sec >= 0 {
            UNIX_EPOCH + Duration::new(self.sec as u64, self.nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.sec.unsigned_abs())
                + Duration::from_nanos(self.nsec as u64)
        }
    }
}

/// Seconds since the epoch, now: the creation time of records.
pub fn now_secs() -> i64 {
    Time::now().sec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trip() {
        for t in [
            Time { sec: 0, nsec: 0 },
            Time {
                sec: 1_700_000_000,
                nsec: 123,
            },
            Time {
                sec: -86_400,
                nsec: 5,
            },
            Time {
                sec: -1,
                nsec: 999_999_999,
            },
        ] {
            assert_eq!(Time::from_system(t.to_system()), t);
        }
    }

    #[test]
    fn ordering_is_chronological() {
        let a = Time {
            sec: -1,
            nsec: 999_999_999,
        };
        let b = Time { sec: 0, nsec: 0 };
        assert!(a < b);
        assert!(Time { sec: 5, nsec: 1 } > Time { sec: 5, nsec: 0 });
    }
}
