//! One keyframe budget per publisher. The echo's receiver (PLI/FIR on the echo
//! track), the decode tap (after loss or a refused frame) and the viewers all
//! want keyframes; each asking on its own would let one publisher be asked
//! several times a second. Here every wish goes through one scheduler: at most
//! one PLI per [`MIN_INTERVAL`], wishes inside the interval wait for its end and
//! merge (a viewer that just joined still gets its keyframe).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::media::plane::MediaPlane;
use crate::metrics::Metrics;

/// Keyframe requests reach the publisher at most this often: a burst of PLIs from
/// a lossy receiver would otherwise make the sender emit keyframe after keyframe.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Who wants a keyframe, each with its wishes and the counter of PLIs sent for it.
#[derive(Default)]
pub struct Wishers {
    sources: Vec<(mpsc::Receiver<()>, Arc<AtomicU64>)>,
}

impl Wishers {
    /// Adds a source: its wishes, and where to count the PLIs that served it.
    pub fn add(&mut self, wishes: mpsc::Receiver<()>, served: Arc<AtomicU64>) {
        self.sources.push((wishes, served));
    }
}

/// Sends the publisher of m-line `mid` a PLI (through its media `plane`) for the
/// sources' wishes, at most one per [`MIN_INTERVAL`]. Ends when every source has gone.
pub async fn schedule(mut wishers: Wishers, plane: Arc<MediaPlane>, mid: String, metrics: Arc<Metrics>) {
    let mut last_sent: Option<tokio::time::Instant> = None;
    while let Some(first) = next_wish(&mut wishers).await {
        if let Some(last) = last_sent {
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }
        // Everyone who asked meanwhile is served by the same PLI.
        let mut served = vec![first];
        for (index, (wishes, _)) in wishers.sources.iter_mut().enumerate() {
            while wishes.try_recv().is_ok() {
                served.push(index);
            }
        }
        served.sort_unstable();
        served.dedup();
        if plane.request_keyframe(&mid) {
            metrics.plis_relayed.inc();
            for index in served {
                wishers.sources[index].1.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            tracing::debug!(mid, "no keyframe request sent: the publisher's stream is not known yet");
        }
        last_sent = Some(tokio::time::Instant::now());
    }
}

/// The index of the next source with a wish; `None` once all have closed.
async fn next_wish(wishers: &mut Wishers) -> Option<usize> {
    loop {
        wishers.sources.retain(|(wishes, _)| !wishes.is_closed() || !wishes.is_empty());
        if wishers.sources.is_empty() {
            return None;
        }
        let polls = wishers
            .sources
            .iter_mut()
            .enumerate()
            .map(|(index, (wishes, _))| Box::pin(async move { (index, wishes.recv().await) }));
        let ((index, wish), _, rest) = futures_util::future::select_all(polls).await;
        drop(rest);
        match wish {
            Some(()) => return Some(index),
            // That source closed: drop it and wait on the others.
            None => {
                wishers.sources.remove(index);
            }
        }
    }
}
