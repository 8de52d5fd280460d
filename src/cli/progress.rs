//! Progress bars for uploads and downloads, drawn only when stderr is a terminal.

use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::Progress;

/// The bars of one command; several transfers run at once under `--jobs`.
#[derive(Clone)]
pub struct Bars {
    multi: Option<MultiProgress>,
}

impl Bars {
    pub fn new(enabled: bool) -> Self {
        Self {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar for one transfer of `total` bytes (unknown: a spinner with a byte count).
    pub fn transfer(&self, label: &str, total: Option<u64>) -> Transfer {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{msg:30!} {spinner} {bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            multi.add(bar.with_message(label.to_owned()))
        });
        Transfer { bar }
    }
}

/// One transfer's bar; removed from the screen when dropped.
pub struct Transfer {
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// The callback the API client reports transferred bytes to.
    pub fn callback(&self) -> Option<Progress> {
        self.bar
            .clone()
            .map(|bar| -> Progress { Arc::new(move |bytes| bar.set_position(bytes)) })
    }

    /// Sets the position directly (for `Download::write_to`'s plain closure).
    pub fn set(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
