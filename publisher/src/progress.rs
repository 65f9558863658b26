//! Progress on stderr: a bar per phase on a terminal, one line per finished
//! phase otherwise, nothing at all with `--json` (stdout is then one object).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
    quiet: bool,
}

impl Progress {
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

    /// A line for people, kept above the bars.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            // MultiProgress prints nothing when stderr is not a terminal.
            if self.bars.is_hidden() {
                eprintln!("{}", line.as_ref());
            } else {
                let _ = self.bars.println(line.as_ref());
            }
        }
    }

    /// A phase measured in bytes; `total` may grow as work is found.
    pub fn bytes(&self, phase: &str, total: Option<u64>) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}")
                .expect("a valid template"),
        );
        bar.set_prefix(phase.to_owned());
        bar
    }

    /// A phase with no measurable size.
    pub fn spinner(&self, phase: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{prefix:>12} {spinner} {elapsed}").expect("a valid template"));
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A phase over `files` files of `bytes` bytes in all.
    pub fn files_and_bytes(&self, phase: &str, files: u64, bytes: u64) -> FileBar {
        let bar = self.bytes(phase, Some(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} {bar:30} {msg} files, {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        );
        bar.set_message(format!("0/{files}"));
        FileBar {
            bar,
            files,
            done: Arc::default(),
        }
    }
}

/// Counts files and bytes of one phase.
#[derive(Clone)]
pub struct FileBar {
    bar: ProgressBar,
    files: u64,
    done: Arc<AtomicU64>,
}

impl FileBar {
    /// One more file of `size` bytes is done.
    pub fn tick_file(&self, size: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{done}/{}", self.files));
        self.bar.inc(size);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
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
