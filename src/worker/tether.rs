//! A worker its nanny started, when the nanny dies (however it dies: the kernel sends the
//! child [`crate::sys::PARENT_DEATH_SIGNAL`]): it stops at once, its scratch folder is
//! removed, and it ends as the signal would have ended it, so its task commands die with it
//! as they always did. A worker without a nanny watches nothing.
//!
//! It owns no state of the worker's: it asks the worker's loop to stop, as a signal does.

use super::server::Event;
use async_io::Timer;
use futures_lite::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker that stops for its nanny's death may take (leaving the scheduler,
/// flushing) before it removes its scratch folder itself and ends.
const PARENT_DEATH_GRACE: Duration = Duration::from_secs(5);

/// Waits for the nanny's death signal; forever when there is no nanny to watch.
pub(super) async fn parent_died<T>(signals: Option<&mut async_signal::Signals>) -> Option<T> {
    match signals {
        Some(signals) => {
            signals.next().await;
        }
        None => futures_lite::future::pending::<()>().await,
    }
    log::info!("the nanny is gone; stopping");
    None
}

/// When the nanny dies: stops the worker at once (a draining worker too: nobody is left to
/// wait for it), and if that does not end it in time, removes its scratch folder and ends it.
pub(super) async fn stop_when_parent_dies(
    mut signals: async_signal::Signals,
    stop: async_channel::Sender<Event>,
    died: Arc<AtomicBool>,
    scratch: PathBuf,
) {
    parent_died::<()>(Some(&mut signals)).await;
    died.store(true, Ordering::SeqCst);
    // The second request of a draining worker stops it at once; the first of any other does.
    for _ in 0..2 {
        let _ = stop.send(Event::Stop).await;
    }
    Timer::after(PARENT_DEATH_GRACE).await;
    log::warn!("the worker did not stop within {PARENT_DEATH_GRACE:?} of its nanny's death; ending it");
    let _ = std::fs::remove_dir_all(&scratch);
    crate::sys::die_of_parent_death();
}
