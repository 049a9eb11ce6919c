//! A worker its nanny started, when the nanny dies (however it dies: the kernel sends the
//! child [`crate::sys::PARENT_DEATH_SIGNAL`]): it ends at once, as when that death killed it
//! outright (its task commands killed, no goodbye to the scheduler, which counts it lost),
//! but its scratch folder is removed first; then it ends by the signal. A worker without a
//! nanny watches nothing.
//!
//! It owns no state of the worker's: it tells the worker's loop, as a stop request does.

use super::server::Event;
use async_io::Timer;
use futures_lite::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker that ends for its nanny's death may take (killing its executions,
/// removing its folder) before it removes the folder itself and ends.
const PARENT_DEATH_GRACE: Duration = Duration::from_secs(5);

/// Waits for the nanny's death signal; forever when there is no nanny to watch.
pub(super) async fn parent_died<T>(signals: Option<&mut async_signal::Signals>) -> Option<T> {
    match signals {
        Some(signals) => {
            signals.next().await;
        }
        None => futures_lite::future::pending::<()>().await,
    }
    log::info!("the nanny is gone; ending the worker");
    None
}

/// When the nanny dies: ends the worker at once (its executions killed, without the goodbye
/// a stop sends: to the scheduler this is the loss it always was), and if that does not end
/// it in time, removes its scratch folder and ends it.
pub(super) async fn stop_when_parent_dies(
    mut signals: async_signal::Signals,
    events: async_channel::Sender<Event>,
    died: Arc<AtomicBool>,
    scratch: PathBuf,
) {
    parent_died::<()>(Some(&mut signals)).await;
    died.store(true, Ordering::SeqCst);
    let _ = events.send(Event::NannyDied).await;
    Timer::after(PARENT_DEATH_GRACE).await;
    log::warn!("the worker did not stop within {PARENT_DEATH_GRACE:?} of its nanny's death; ending it");
    let _ = std::fs::remove_dir_all(&scratch);
    crate::sys::die_of_parent_death();
}
