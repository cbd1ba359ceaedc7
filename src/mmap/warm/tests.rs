//! The schedule of bodies on a runtime's workers: shares, yields that hold,
//! and the time rule.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http_body::Body;

use crate::MmapBody;

/// Polls `body` to its end with a waker that does nothing; how many
/// times it was pending, and the bytes it sent.
fn drain(body: &mut MmapBody) -> (usize, usize) {
    let mut cx = Context::from_waker(Waker::noop());
    let (mut pending, mut sent) = (0, 0);
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => sent += frame.unwrap().into_data().unwrap().len(),
            Poll::Ready(None) => return (pending, sent),
            Poll::Pending => pending += 1,
        }
        assert!(pending < 1000, "never ready");
    }
}

/// Alone a body hands out 2 MiB between yields; with others, an equal
/// part in whole 64 KiB steps, never less than 64 KiB.
#[test]
fn bodies_streaming_at_once_share_two_mib_in_64_kib_steps() {
    use super::share::share;
    assert_eq!(share(0), 2 << 20);
    assert_eq!(share(1), 2 << 20);
    assert_eq!(share(2), 1 << 20);
    assert_eq!(share(3), 10 << 16, "699050 rounded down to 64 KiB");
    assert_eq!(share(32), 64 << 10);
    assert_eq!(share(1000), 64 << 10);
    for n in 1..100 {
        assert_eq!(share(n) % (64 << 10), 0, "{n} bodies");
    }
}

/// Two bodies polled in turn inside a runtime hand out frames of 1 MiB
/// (their share), each followed by a yield, even when told 4 MiB; once
/// one has sent its last byte, the other is alone again.
#[test]
fn two_bodies_at_once_take_turns_in_their_share() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let len = 8 << 20;
    let (mut a, mut b) = (body(len).chunk_size(4 << 20), body(len).chunk_size(4 << 20));
    // Both stream once each was polled.
    let first = |body: &mut MmapBody, cx: &mut Context<'_>| match Pin::new(body).poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap().len(),
        other => panic!("{:?}", other.map(|f| f.map(|f| f.map(|_| ())))),
    };
    let _ = first(&mut a, &mut cx);
    let mut lens = Vec::new();
    for _ in 0..3 {
        loop {
            match Pin::new(&mut b).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    lens.push(frame.into_data().unwrap().len());
                    break;
                }
                Poll::Pending => {}
                other => panic!("{:?}", other.map(|f| f.map(|f| f.map(|_| ())))),
            }
        }
    }
    assert!(lens.iter().all(|&len| len == 1 << 20), "{lens:?}");
    drop(a);
    let (_, sent) = drain(&mut b);
    assert_eq!(sent, len - (3 << 20));
}

fn body(len: usize) -> MmapBody {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&vec![7u8; len]).unwrap();
    // SAFETY: a temp file private to this test.
    unsafe { MmapBody::from_file(file) }
        .unwrap()
        .chunk_size(1 << 20)
}

/// 8 MiB in 1 MiB frames gives the worker back after every 2 MiB, and
/// sends every byte; outside a runtime it never waits.
#[test]
fn a_body_yields_every_two_mib_inside_a_runtime_only() {
    let len = 8 << 20;
    let (pending, sent) = drain(&mut body(len));
    assert_eq!((pending, sent), (0, len), "outside a runtime");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let mut inside = body(len);
    let started = std::time::Instant::now();
    let (pending, sent) = drain(&mut inside);
    assert_eq!(sent, len);
    // Frames 3, 5, 7 start after 2 MiB more (the last byte, its own
    // frame, may add a yield for frames still held: none are here).
    // A drain that took longer than YIELD_AFTER (this thread was
    // descheduled) may have yielded sooner, never more than per frame.
    if started.elapsed() < super::YIELD_AFTER {
        assert_eq!(pending, 3, "one yield every 2 MiB");
    } else {
        assert!((3..=7).contains(&pending), "{pending} yields");
    }
}

/// A consumer that polls the body again in the same turn of its task,
/// right after the body yielded (as hyper's HTTP/1.1 dispatcher may),
/// gets no frame until the runtime has woken the task; a task on the
/// same runtime runs in between, every time.
#[test]
fn a_yield_holds_until_the_runtime_rescheduled_the_body() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let turns = runtime.block_on(async {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let other = ran.clone();
        let neighbour = tokio::spawn(async move {
            loop {
                other.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let len = 8 << 20;
        let mut body = body(len);
        let (mut sent, mut turns) = (0, Vec::new());
        std::future::poll_fn(|cx| loop {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(frame)) => sent += frame.unwrap().into_data().unwrap().len(),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => {
                    let again = Pin::new(&mut body).poll_frame(cx);
                    assert!(again.is_pending(), "a frame before the wake-up");
                    turns.push(ran.load(std::sync::atomic::Ordering::Relaxed));
                    return Poll::Pending;
                }
            }
        })
        .await;
        neighbour.abort();
        assert_eq!(sent, len);
        turns
    });
    assert!(turns.len() >= 3, "{turns:?}");
    assert!(
        turns.windows(2).all(|w| w[1] > w[0]),
        "the other task ran: {turns:?}"
    );
}

/// A consumer that takes 1 ms to write each 1 MiB frame (a connection
/// writing at 1 GiB/s, as HTTP/2 does here) gets the worker back after
/// every frame: 500 µs passed, though only 1 MiB of the 2 went out.
/// After a yield the body hands out its next frame at once.
#[test]
fn a_body_yields_after_half_a_millisecond_short_of_two_mib() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let len = 8 << 20;
    let mut body = body(len);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut pending_before, mut frames, mut pending, mut sent) = (Vec::new(), 0, 0, 0);
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                sent += frame.unwrap().into_data().unwrap().len();
                pending_before.push(pending);
                pending = 0;
                frames += 1;
                // The connection writing the frame.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Poll::Ready(None) => break,
            Poll::Pending => pending += 1,
        }
        assert!(pending < 3, "a yield is one Pending");
    }
    // Eight frames of 1 MiB, the last one short of its last byte, which
    // is a frame of its own (held back until the file is verified, and
    // sent as soon as it is: one byte holds no worker).
    assert_eq!((frames, sent), (9, len));
    assert_eq!(
        pending_before,
        [0, 1, 1, 1, 1, 1, 1, 1, 0],
        "one yield per frame"
    );
}
