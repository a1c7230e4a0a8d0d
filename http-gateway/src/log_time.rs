//! The log lines' timestamp, as tracing-subscriber's default writes it
//! (`2026-12-02T05:07:42.814859Z`, UTC, microseconds), at a fraction of its cost.
//!
//! The default formats all seven fields through `write!` with widths for every line: about 1 µs,
//! a quarter of an access-log line's formatting (benches/RESULTS.md). Here each thread keeps
//! the text up to the second and only writes the microseconds when the second has not changed.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// RFC 3339 UTC with microseconds; give it to `tracing_subscriber::fmt().with_timer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UtcMicros;

thread_local! {
    /// The second last formatted on this thread, and its text up to and including the `.`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write_time(w, now.as_secs(), now.subsec_micros())
    }
}

fn write_time(w: &mut impl Write, secs: u64, micros: u32) -> fmt::Result {
    SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            c.1.clear();
            let _ = write_second(&mut c.1, secs);
            c.0 = secs;
        }
        w.write_str(&c.1)?;
        write!(w, "{micros:06}Z")
    })
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the epoch.
fn write_second(out: &mut String, secs: u64) -> fmt::Result {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(secs: u64, micros: u32) -> String {
        let mut s = String::new();
        write_time(&mut s, secs, micros).unwrap();
        s
    }

    #[test]
    fn known_instants() {
        assert_eq!(text(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(text(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(text(1_796_188_078, 814_859), "2026-12-02T05:07:58.814859Z");
        assert_eq!(text(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
        // The cache follows the second, and a second that comes again.
        assert_eq!(text(0, 1), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn every_day_agrees_with_httpdate() {
        // Noon of every day from 1970 to 2100, against another formatter's date.
        for day in 0..47_482u64 {
            let secs = day * 86_400 + 43_200;
            let ours = text(secs, 0);
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let parsed = httpdate::parse_http_date(&httpdate::fmt_http_date(t)).unwrap();
            assert_eq!(parsed, t);
            let http = httpdate::fmt_http_date(t); // "Wed, 02 Dec 2026 12:00:00 GMT"
            let (d, mon, y) = (&http[5..7], &http[8..11], &http[12..16]);
            let months = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let m = months.iter().position(|x| *x == mon).unwrap() + 1;
            assert_eq!(&ours[..10], format!("{y}-{m:02}-{d}"), "day {day}");
        }
    }
}
