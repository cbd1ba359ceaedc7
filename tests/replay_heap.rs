//! Recording a body for replay keeps `Bytes` clones: it allocates per
//! frame, never per byte. This binary installs a counting allocator.
#![cfg(feature = "replay")]

use bytes::Bytes;
use http_body_util::BodyExt;
use mmap_body::ReplayBody;
use mmap_body_devkit::alloc::{track_heap, CountingAlloc};
use mmap_body_devkit::bodies::Streamed;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MIB: usize = 1024 * 1024;

#[test]
fn recording_32_mib_allocates_per_frame_not_per_byte() {
    // The 32 frames of 1 MiB are allocated before counting starts.
    let data = Bytes::from(vec![7u8; 32 * MIB]);
    let frames: Vec<Bytes> = (0..32)
        .map(|i| data.slice(i * MIB..(i + 1) * MIB))
        .collect();
    let body = Streamed::new(frames, None);

    let (sizes, heap) = track_heap(async move {
        let mut original = ReplayBody::new(body, 64 * MIB);
        let retry = original.clone();
        let first = drain(&mut original).await;
        drop(original);
        // The clone replays all 32 recorded frames without the original.
        let replayed = drain(&mut { retry }).await;
        (first, replayed)
    });
    eprintln!("{heap:?}");
    assert_eq!(sizes, (32 * MIB, 32 * MIB));
    // The recording is a list of 32 `Bytes` handles: a few KiB of
    // bookkeeping for 32 MiB of data.
    assert!(heap.peak < 64 * 1024, "peak heap {} bytes", heap.peak);
    assert!(heap.allocations < 200, "{} allocations", heap.allocations);
}

async fn drain(body: &mut ReplayBody<Streamed>) -> usize {
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        len += frame.unwrap().into_data().unwrap().len();
    }
    len
}
