//! Progress on stderr: a bar per phase on a terminal, one line per finished
//! phase otherwise, nothing at all with `--json` (stdout is then one object).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where the phases of a command report.
#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
    quiet: bool,
}

impl Progress {
    /// `quiet`: draw nothing and say nothing (for `--json`).
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Self {
            bars: MultiProgress::with_draw_target(target),
            quiet,
        }
    }

    /// A line for people, kept above the bars; nothing when quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            self.notice(line);
        }
    }

    /// A line that matters even with `--json` (on stderr, so stdout stays one
    /// object): a rebase, a repair.
    pub fn notice(&self, line: impl AsRef<str>) {
        // MultiProgress prints nothing when stderr is not a terminal.
        if self.bars.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            let _ = self.bars.println(line.as_ref());
        }
    }

    /// A phase with no measurable size.
    pub fn spinner(&self, phase: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{prefix:>12} {spinner} {elapsed}").expect("a valid template"));
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A phase over `files` files (more can be added); `bytes` is their size
    /// if known, and `note` is shown after the counts.
    pub fn files(&self, phase: &str, files: u64, bytes: Option<u64>, note: &str) -> FileBar {
        let bar = self.bars.add(ProgressBar::new(files));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} files, {msg} eta {eta}")
                .expect("a valid template"),
        );
        bar.set_prefix(phase.to_owned());
        let file_bar = FileBar {
            bar,
            bytes: Arc::default(),
            total_bytes: bytes,
            note: note.to_owned(),
            started: Instant::now(),
        };
        file_bar.show();
        file_bar
    }
}

/// Counts the files and bytes of one phase.
#[derive(Clone)]
pub struct FileBar {
    bar: ProgressBar,
    bytes: Arc<AtomicU64>,
    total_bytes: Option<u64>,
    note: String,
    started: Instant,
}

impl FileBar {
    /// The phase turned out to cover `files` files.
    pub fn set_files(&self, files: u64) {
        self.bar.set_length(files);
    }

    /// One more file of `size` bytes is done.
    pub fn tick_file(&self, size: u64) {
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.bar.inc(1);
        self.show();
    }

    fn show(&self) {
        let done = human_bytes(self.bytes.load(Ordering::Relaxed));
        let bytes = match self.total_bytes {
            Some(total) => format!("{done} of {}", human_bytes(total)),
            None => done,
        };
        self.bar.set_message(format!("{bytes}{}", self.note));
    }

    /// Files and bytes done, and the time since the phase began.
    pub fn finish(&self) -> (u64, u64, Duration) {
        self.bar.finish_and_clear();
        (
            self.bar.position(),
            self.bytes.load(Ordering::Relaxed),
            self.started.elapsed(),
        )
    }
}

/// `bytes` for people: 1.5 MB, 20 KB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
