//! Time for people and from people: the one timestamp parser and the one duration
//! formatter of the workspace.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses an ISO 8601 / RFC 3339 time: with an offset or `Z`, or without one (then UTC),
/// `T` or a space between date and time, 0–9 fractional digits, seconds optional
/// (`YYYY-MM-DDTHH:MM`). Every form the upstreams send, the FDSN clients ask with, the
/// command line takes and SQLite stores. A date alone is not a time: `None`.
pub fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|fmt| NaiveDateTime::parse_from_str(naive, fmt).ok())
    .map(|t| t.and_utc())
}

/// A duration in words, the one way the logs, `/health` and the dashboard show an interval,
/// a run's length or an estimate: `10 minutes`, `1 minute`, `2.5 minutes`, `90 seconds`,
/// `1.5 seconds`, `1 second`, `340 milliseconds`. Whole minutes are told in minutes, two
/// minutes and more in tenths of minutes, less in seconds (tenths below a minute), less
/// than a second in milliseconds.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if secs == 0 && d.subsec_nanos() != 0 {
        format!("{} milliseconds", d.as_millis())
    } else if d.subsec_nanos() != 0 && secs < 60 {
        format!("{:.1} seconds", d.as_secs_f64())
    } else if secs >= 60 && secs.is_multiple_of(60) && d.subsec_nanos() == 0 {
        let m = secs / 60;
        format!("{m} minute{}", plural(m))
    } else if secs >= 120 {
        format!("{:.1} minutes", d.as_secs_f64() / 60.0)
    } else {
        format!("{secs} second{}", plural(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 seconds");
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(150)), "2.5 minutes");
        assert_eq!(
            human_duration(Duration::from_millis(340)),
            "340 milliseconds"
        );
        assert_eq!(human_duration(Duration::ZERO), "0 seconds");
    }

    #[test]
    fn parses_every_form() {
        let want = "2024-03-01T12:34:56Z";
        for s in [
            "2024-03-01T12:34:56Z",
            "2024-03-01T13:34:56+01:00",
            "2024-03-01T12:34:56",
            " 2024-03-01 12:34:56z ",
            "2024-03-01T12:34:56.000000000",
        ] {
            let t = parse_utc(s).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            assert_eq!(t.as_deref(), Some(want), "{s}");
        }
        assert_eq!(
            parse_utc("2024-03-01T12:34").map(|t| t.timestamp() % 3600),
            Some(34 * 60)
        );
        for bad in ["2024-03-01", "yesterday", "", "2024-13-01T00:00:00Z"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
