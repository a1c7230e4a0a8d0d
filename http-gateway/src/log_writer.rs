//! Where the gateway's log lines go: appended to a shared buffer that a background thread writes
//! out every [`FLUSH_EVERY`], so a request's access-log line costs a copy, not a `write(2)`.
//!
//! Why not write each line at once, or use `tracing-appender`'s non-blocking writer? Writing
//! each line to stderr cost about 17 µs of CPU per HTTP produce, and the lock around the
//! write made workers wait on each other (benches/RESULTS.md). `tracing-appender` moves the
//! write to a thread but allocates a `Vec` per line and wakes that thread for almost every
//! line under load. Here a line is one `memcpy` under a short lock; the thread wakes
//! [`FLUSH_EVERY`], or early when [`FLUSH_SOON`] bytes are waiting.
//!
//! Warnings and errors are written through at once (with everything before them, in order),
//! and [`LogWriter::flush`] writes what waits, which the binary calls on its way out and from a
//! panic hook. What a `kill -9` loses is at most the last [`FLUSH_EVERY`] of info lines.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Waiting bytes that wake the writing thread before [`FLUSH_EVERY`].
pub const FLUSH_SOON: usize = 64 * 1024;
/// Waiting bytes beyond which the logging thread writes them itself: when the output is slower
/// than the log (a blocked pipe), logging slows down rather than losing lines or memory.
pub const MAX_WAITING: usize = 8 * 1024 * 1024;

/// The buffered log output; cheap to clone. Give it to `tracing_subscriber::fmt().with_writer`.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Lines not yet written.
    waiting: Mutex<Vec<u8>>,
    /// The output; its lock also orders concurrent flushes.
    out: Mutex<Box<dyn Write + Send>>,
    /// Wakes the writing thread early (waited on with `waiting`'s lock).
    wake: Condvar,
}

impl LogWriter {
    /// A writer to `out` with its writing thread started.
    pub fn start(out: impl Write + Send + 'static) -> io::Result<LogWriter> {
        let w = LogWriter::unstarted(out);
        let inner = Arc::downgrade(&w.inner);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                // Ends when the last LogWriter is gone.
                while let Some(inner) = inner.upgrade() {
                    {
                        let mut waiting = inner.waiting.lock();
                        if waiting.len() < FLUSH_SOON {
                            inner.wake.wait_for(&mut waiting, FLUSH_EVERY);
                        }
                    }
                    // Nowhere to report a failed write of the log itself.
                    let _ = inner.flush();
                }
            })?;
        Ok(w)
    }

    /// A writer whose lines wait until [`flush`](Self::flush) (or an urgent line): the thread of
    /// [`start`](Self::start) without the thread, for tests.
    fn unstarted(out: impl Write + Send + 'static) -> LogWriter {
        LogWriter {
            inner: Arc::new(Inner {
                waiting: Mutex::new(Vec::with_capacity(FLUSH_SOON)),
                out: Mutex::new(Box::new(out)),
                wake: Condvar::new(),
            }),
        }
    }

    /// Writes every waiting line now.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    fn append(&self, line: &[u8]) -> io::Result<()> {
        let len = {
            let mut w = self.inner.waiting.lock();
            w.extend_from_slice(line);
            w.len()
        };
        if len >= MAX_WAITING {
            self.inner.flush()
        } else {
            if len >= FLUSH_SOON && len - line.len() < FLUSH_SOON {
                self.inner.wake.notify_one();
            }
            Ok(())
        }
    }
}

impl Inner {
    fn flush(&self) -> io::Result<()> {
        let mut out = self.out.lock();
        let lines = {
            let mut w = self.waiting.lock();
            if w.is_empty() {
                return Ok(());
            }
            std::mem::replace(&mut *w, Vec::with_capacity(FLUSH_SOON))
        };
        out.write_all(&lines)?;
        out.flush()
    }
}

/// One event's writer: appends, and writes everything through when it is dropped after a
/// warning or an error.
pub struct LineWriter<'a> {
    log: &'a LogWriter,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.urgent {
            let _ = self.log.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            log: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            log: self,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().clone()).unwrap()
        }
    }

    fn subscriber(w: LogWriter) -> impl tracing::Subscriber {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(w)
            .finish()
    }

    #[test]
    fn info_lines_wait_and_a_warning_writes_everything_in_order() {
        let sink = Sink::default();
        let w = LogWriter::unstarted(sink.clone());
        tracing::subscriber::with_default(subscriber(w.clone()), || {
            tracing::info!("first");
            tracing::info!("second");
            assert_eq!(sink.text(), "", "info lines wait for a flush");
            tracing::warn!("third");
        });
        let out = sink.text();
        let (a, b, c) = (
            out.find("first").unwrap(),
            out.find("second").unwrap(),
            out.find("third").unwrap(),
        );
        assert!(a < b && b < c, "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }

    #[test]
    fn flush_writes_what_waits_once() {
        let sink = Sink::default();
        let w = LogWriter::unstarted(sink.clone());
        tracing::subscriber::with_default(subscriber(w.clone()), || tracing::info!("line"));
        w.flush().unwrap();
        w.flush().unwrap();
        assert_eq!(sink.text().matches("line").count(), 1);
    }

    #[test]
    fn the_thread_writes_info_lines_soon() {
        let sink = Sink::default();
        let w = LogWriter::start(sink.clone()).unwrap();
        tracing::subscriber::with_default(subscriber(w.clone()), || tracing::info!("later"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !sink.text().contains("later") {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_full_buffer_is_written_by_the_logging_thread() {
        let sink = Sink::default();
        let w = LogWriter::unstarted(sink.clone());
        let line = vec![b'x'; 1024];
        let mut lw = w.make_writer();
        for _ in 0..(MAX_WAITING / line.len()) {
            lw.write_all(&line).unwrap();
        }
        assert_eq!(sink.0.lock().len(), MAX_WAITING, "written at the cap");
        assert!(w.inner.waiting.lock().is_empty());
    }
}
