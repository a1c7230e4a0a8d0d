//! One progress line a second while a benchmark runs: an indicatif line on a terminal, plain
//! lines on stderr otherwise (so stdout keeps only the summary).

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use super::stats::Recorder;

pub struct Progress {
    task: JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(label: String, rec: Arc<Recorder>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .expect("valid template"),
            );
            b
        });
        let b2 = bar.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = (0u64, Instant::now());
            loop {
                tick.tick().await;
                let n = rec.messages.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (n - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
                last = (n, now);
                let line = format!(
                    "{label}: {n} msgs, {rate:.0} msg/s, {} errors, p99 {:.2} ms",
                    rec.errors.load(Ordering::Relaxed),
                    rec.p99_ms()
                );
                match &b2 {
                    Some(b) => {
                        b.set_message(line);
                        b.tick();
                    }
                    None => eprintln!("[{:>4.0}s] {line}", start.elapsed().as_secs_f64()),
                }
            }
        });
        Progress { task, bar }
    }

    pub fn finish(self) {
        self.task.abort();
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
