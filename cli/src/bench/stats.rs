//! What a benchmark measures: counts, an HDR latency histogram, the process's CPU time, and the
//! summary computed from them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// CPU time this process used so far (getrusage(RUSAGE_SELF)): user and system.
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Shared by every task of a run.
pub struct Recorder {
    pub messages: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    /// Microseconds, 1 µs to 1 h, 3 significant digits.
    hist: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            messages: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hist: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

impl Recorder {
    /// One successful operation that moved `msgs` messages of `bytes` bytes in `latency`.
    pub fn ok(&self, msgs: u64, bytes: u64, latency: Duration) {
        self.messages.fetch_add(msgs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let us = (latency.as_micros() as u64).max(1);
        self.hist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(us);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn histogram(&self) -> Histogram<u64> {
        self.hist.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn p99_ms(&self) -> f64 {
        let h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.99) as f64 / 1000.0
        }
    }
}

/// The end-of-run summary (also the `--json` object).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub bench: String,
    pub mode: String,
    pub messages: u64,
    pub errors: u64,
    pub elapsed_secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// What one latency sample is (a send, a batch, a pull).
    pub latency_of: String,
    pub latency_samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub cpu_user_secs: f64,
    pub cpu_sys_secs: f64,
    /// (user + sys) / messages, in microseconds.
    pub cpu_us_per_msg: f64,
}

/// A run's start: wall clock and CPU.
pub struct Start {
    at: std::time::Instant,
    cpu: (Duration, Duration),
}

impl Start {
    pub fn now() -> Self {
        Start {
            at: std::time::Instant::now(),
            cpu: cpu_time(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }

    pub fn summary(&self, bench: &str, mode: &str, latency_of: &str, r: &Recorder) -> Summary {
        let elapsed = self.at.elapsed().as_secs_f64().max(1e-9);
        let (u, s) = cpu_time();
        let (user, sys) = (
            u.saturating_sub(self.cpu.0).as_secs_f64(),
            s.saturating_sub(self.cpu.1).as_secs_f64(),
        );
        let messages = r.messages.load(Ordering::Relaxed);
        let h = r.histogram();
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64 / 1000.0
            }
        };
        Summary {
            bench: bench.into(),
            mode: mode.into(),
            messages,
            errors: r.errors.load(Ordering::Relaxed),
            elapsed_secs: elapsed,
            msgs_per_sec: messages as f64 / elapsed,
            mb_per_sec: r.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
            latency_of: latency_of.into(),
            latency_samples: h.len(),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
            cpu_user_secs: user,
            cpu_sys_secs: sys,
            cpu_us_per_msg: if messages == 0 {
                0.0
            } else {
                (user + sys) * 1e6 / messages as f64
            },
        }
    }
}

impl Summary {
    pub fn text(&self) -> String {
        format!(
            "{} {}: {} messages, {} errors in {:.2} s\n\
             throughput: {:.0} msg/s, {:.2} MB/s\n\
             latency per {} ({} samples), ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n\
             cpu: {:.2} s user + {:.2} s sys = {:.1} us per message\n",
            self.bench,
            self.mode,
            self.messages,
            self.errors,
            self.elapsed_secs,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.latency_of,
            self.latency_samples,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.cpu_user_secs,
            self.cpu_sys_secs,
            self.cpu_us_per_msg
        )
    }
}

/// HdrHistogram's percentile distribution text (as Java's `outputPercentileDistribution` and
/// the online plotter read it), values in milliseconds from a microsecond histogram.
pub fn write_percentiles(h: &Histogram<u64>, out: &mut impl Write) -> std::io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / SCALE;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]")?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_from_recorded_samples() {
        let r = Recorder::default();
        for ms in 1..=100u64 {
            r.ok(2, 200, Duration::from_millis(ms));
        }
        r.error();
        let s = Start::now().summary("produce", "sync", "send", &r);
        assert_eq!((s.messages, s.errors, s.latency_samples), (200, 1, 100));
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["messages"], 200);
        assert!(v["cpuUsPerMsg"].is_number());
    }

    #[test]
    fn cpu_time_moves() {
        let (u0, s0) = cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (u1, s1) = cpu_time();
        assert!(u1 + s1 > u0 + s0);
    }

    #[test]
    fn percentile_text_format() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in [1000u64, 2000, 3000, 4000] {
            h.record(us).unwrap();
        }
        let mut out = Vec::new();
        write_percentiles(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("Percentile"));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|c| c.parse().unwrap()).collect())
            .collect();
        assert!((rows[0][0] - 1.0).abs() < 0.01);
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        assert!((last[0] - 4.0).abs() < 0.01 && last[1] == 1.0 && last[2] == 4.0);
        assert!(text.contains("Total count    =            4"));
    }
}
