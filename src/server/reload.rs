//! Picking up rotated key material without a restart: a file is re-read when
//! its contents change (polled) and on SIGHUP. The TLS certificate and the
//! JWT signing key both go through this, so they rotate the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Something loaded from files that can be reloaded in place; a bad
/// replacement must leave the current material in use.
pub trait Reload: Send + Sync + 'static {
    /// Reloads if the files' contents changed since the last look (and logs
    /// the outcome); returns whether it tried.
    fn reload_if_changed(&self) -> bool;
    /// Reloads now, changed or not (SIGHUP), and logs the outcome.
    fn reload_now(&self);
}

/// A hash of a file's contents, `None` when it could not be read (e.g.
/// mid-swap of a Kubernetes secret volume). Contents, not (mtime, length):
/// file times have the kernel tick's granularity, so a same-size rewrite
/// within one tick (a new key of the same type) would keep both; key files
/// are a few KB, so reading them every few seconds costs nothing.
pub fn fingerprint(bytes: &std::io::Result<Vec<u8>>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = bytes.as_ref().ok()?;
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Polls `target` every `interval` and reloads it on SIGHUP; both stop when
/// the returned guard is dropped. `what` names it in the log.
pub fn spawn(target: Arc<dyn Reload>, interval: Duration, what: &'static str) -> Reloader {
    // Registered here, not in the task, so SIGHUP is handled (not fatal)
    // from the moment this returns.
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, what, "cannot listen for SIGHUP; the files are still polled");
            None
        }
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the files were just read
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tick.tick() => {
                    target.reload_if_changed();
                }
                got = hup => {
                    if got.is_some() {
                        target.reload_now();
                    } else {
                        #[cfg(unix)]
                        {
                            hangup = None;
                        }
                    }
                }
            }
        }
    });
    Reloader(task)
}

/// Keeps a reloader running; dropping it stops the reloader.
#[derive(Debug)]
pub struct Reloader(JoinHandle<()>);

impl Drop for Reloader {
    fn drop(&mut self) {
        self.0.abort();
    }
}
