//! Files re-read when they change (certificates, keys, tokens): their
//! modification times are polled, and a change calls the reload.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// Calls `reload` whenever one of `files` changes, every `every` at most,
/// until `shutdown`.
pub fn spawn<F>(files: Vec<PathBuf>, every: Duration, shutdown: CancellationToken, reload: F)
where
    F: Fn() + Send + 'static,
{
    tokio::spawn(async move {
        let stamp = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let mut last = stamp(&files);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&files);
            if now != last {
                last = now;
                reload();
            }
        }
    });
}
