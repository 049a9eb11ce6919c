//! Periodic events for the async shells: a task that sends an event into a loop's channel
//! at a fixed interval until the loop is gone. Dropping the returned task stops it.

use smol::Task;
use std::time::Duration;

/// Sends `make()` into `tx` every `every`, until `tx`'s receiver is dropped.
pub fn ticker<E: Send + 'static>(
    every: Duration,
    tx: async_channel::Sender<E>,
    make: impl Fn() -> E + Send + 'static,
) -> Task<()> {
    crate::rt::spawn(async move {
        loop {
            async_io::Timer::after(every).await;
            if tx.send(make()).await.is_err() {
                return;
            }
        }
    })
}
