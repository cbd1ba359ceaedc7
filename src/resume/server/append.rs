//! An append: a request's content streamed into the store as it arrives,
//! in batches written on the blocking pool (the runtime's worker never
//! waits for the disk), through a descriptor of its own that it closes
//! when it ends.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use super::store::{Store, Upload};
use super::Uploads;
use crate::error::BoxError;

/// Bytes gathered from the request before one write to the file.
const WRITE_BATCH: usize = 256 * 1024;

/// Why an append stopped.
pub(super) enum Stopped {
    /// The request's body failed (the client went away).
    Interrupted,
    /// A newer request to the same upload took over.
    Superseded,
    /// The upload was cancelled or expired.
    Gone,
    /// Past the upload's length or the size limit.
    TooLong,
    /// The request carried more than `max-append-size`.
    TooLarge,
    /// Writing the file failed.
    Io(io::Error),
}

impl Uploads {
    /// Appends the body at the upload's offset as it arrives. Each write
    /// happens only while this request is still the upload's newest and
    /// within its length and size limit (see [`Store::write`]). The bytes
    /// received are counted against `max-append-size` as they arrive,
    /// whatever `Content-Length` said (a chunked request says nothing):
    /// the frame that would pass it stops the append, and only the bytes
    /// before it are written.
    pub(super) async fn append<B>(
        &self,
        upload: &Arc<Upload>,
        generation: u64,
        body: B,
    ) -> Result<(), Stopped>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        // This append's descriptor, opened at its first write, closed when
        // it returns.
        let mut file = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0;
        let mut received: u64 = 0;
        let max_append = self.inner.limits.max_append_size;
        loop {
            let frame = body.frame().await;
            let ended = match frame {
                None => true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.inner
                            .received
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        received += data.len() as u64;
                        if max_append.is_some_and(|max| received > max) {
                            // Keep what came within the limit, then stop.
                            let within = std::mem::take(&mut batch);
                            self.write(upload, generation, within, &mut file).await?;
                            return Err(Stopped::TooLarge);
                        }
                        batched += data.len();
                        batch.push(data);
                    }
                    false
                }
                Some(Err(_)) => {
                    // Keep what arrived, then stop.
                    self.write(upload, generation, std::mem::take(&mut batch), &mut file)
                        .await?;
                    return Err(Stopped::Interrupted);
                }
            };
            if batched >= WRITE_BATCH || (ended && !batch.is_empty()) {
                self.write(upload, generation, std::mem::take(&mut batch), &mut file)
                    .await?;
                batched = 0;
            }
            if ended {
                return Ok(());
            }
        }
    }

    async fn write(
        &self,
        upload: &Arc<Upload>,
        generation: u64,
        batch: Vec<Bytes>,
        file: &mut Option<File>,
    ) -> Result<(), Stopped> {
        if batch.is_empty() {
            return Ok(());
        }
        let upload = Arc::clone(upload);
        let max_size = self.inner.limits.max_size;
        let mut open = file.take();
        let write = move || {
            let written = Store::write(&upload, generation, &batch, max_size, &mut open);
            (open, written)
        };
        // Off the runtime's workers when there is a runtime to ask.
        let (open, written) = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => match runtime.spawn_blocking(write).await {
                Ok(done) => done,
                Err(err) => (None, Err(Stopped::Io(io::Error::other(err)))),
            },
            Err(_) => write(),
        };
        *file = open;
        written
    }
}
