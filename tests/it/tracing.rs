//! Feature `tracing` (issue #19, part 4): the events of retried and
//! refused uploads, captured by a recording `tracing` subscriber on the test's
//! own thread (a `current_thread` runtime, so the client, the server and the
//! policy all run there), through the fault matrix's stack
//! (`ReplayLayer` + `RetryLayer(RetryPolicy)` + `tower::timeout` +
//! hyper-util) against `Faulty`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use mmap_body::MmapBody;
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{change, test_file, Change};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::fault_matrix::{send, Proto, MIB};

/// One event: its level, target, and fields (`message` included) as text.
#[derive(Debug, Clone)]
struct Seen {
    level: tracing::Level,
    target: String,
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("mmap_body") {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *meta.level(),
            target: meta.target().to_owned(),
            fields,
        });
    }
}

/// The process's global subscriber while these tests run: it takes no
/// event, but keeps every callsite's interest at "sometimes", so that each
/// event asks the subscriber of its thread. Without it `tracing` can
/// cache "never" for a callsite that another test thread registers while
/// this one installs its recorder (the callsite's interest computed from
/// the subscribers before, stored after the recorder's rebuild), and the
/// recorder misses that event (seen: 1 run in 15 of the download tests).
struct AskEachTime;

impl tracing::Subscriber for AskEachTime {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Records this crate's events on this thread until the guard goes.
fn record() -> (Recorder, tracing::subscriber::DefaultGuard) {
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        tracing::subscriber::set_global_default(AskEachTime)
            .expect("no other global subscriber in this test binary");
    });
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    (recorder, tracing::subscriber::set_default(subscriber))
}

impl Recorder {
    fn events(&self, message: &str) -> Vec<Seen> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|e| e.message() == message)
            .cloned()
            .collect()
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_retried_upload_says_why_each_attempt_was_sent_again() {
    let (recorder, _guard) = record();
    let file = test_file(8 * MIB);
    let server = Faulty::start([
        Fault::DropAfter(MIB),
        Fault::StatusAfter(503, MIB, Some("0")),
    ])
    .await;
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::put(server.uri("/up")).body(body).unwrap();
    let res = send(Proto::H1, TIMEOUT, req)
        .await
        .expect("the third attempt");
    assert_eq!(res.status(), 200);
    let retries = recorder.events("retrying request");
    assert_eq!(retries.len(), 2, "{retries:?}");
    let (first, second) = (&retries[0], &retries[1]);
    assert_eq!(first.level, tracing::Level::DEBUG);
    assert_eq!(first.target, "mmap_body::retry");
    assert_eq!(
        (
            first.field("method"),
            first.field("attempt"),
            first.field("reason")
        ),
        ("PUT", "1", "error")
    );
    assert_eq!(first.field("uri"), server.uri("/up"));
    assert_eq!(first.field("replay"), "clone");
    assert_eq!(first.field("retry_after"), "false");
    assert_eq!(first.field("safe"), "idempotent method");
    assert_eq!(
        (
            second.field("attempt"),
            second.field("reason"),
            second.field("retry_after")
        ),
        ("2", "status 503", "true")
    );
    assert_eq!(second.field("wait_ms"), "0", "Retry-After: 0");
    assert!(recorder.events("not retrying request").is_empty());
}

#[tokio::test]
async fn a_post_retried_for_its_idempotency_key_says_so() {
    let (recorder, _guard) = record();
    let file = test_file(2 * MIB);
    let server = Faulty::start([Fault::StatusAfter(503, MIB, Some("0"))]).await;
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::post(server.uri("/up"))
        .header(mmap_body::retry::IDEMPOTENCY_KEY, "\"k-1\"")
        .body(body)
        .unwrap();
    let res = send(Proto::H1, TIMEOUT, req).await.expect("the retry");
    assert_eq!(res.status(), 200);
    let retries = recorder.events("retrying request");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(
        (retries[0].field("method"), retries[0].field("safe")),
        ("POST", "idempotency key")
    );
}

#[tokio::test]
async fn a_post_cut_off_mid_body_says_why_it_is_not_retried() {
    let (recorder, _guard) = record();
    let file = test_file(8 * MIB);
    let server = Faulty::start([Fault::DropAfter(MIB)]).await;
    // SAFETY: the test owns the file and nothing changes it.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    let req = Request::post(server.uri("/up")).body(body).unwrap();
    send(Proto::H1, TIMEOUT, req)
        .await
        .expect_err("not retried");
    let not = recorder.events("not retrying request");
    assert_eq!(not.len(), 1, "{:?}", recorder.0.lock().unwrap());
    assert_eq!(
        (not[0].field("method"), not[0].field("reason")),
        ("POST", "error")
    );
    assert!(not[0].field("why").contains("not idempotent"), "{not:?}");
    assert!(!not[0].field("error").is_empty());
}

#[tokio::test]
async fn a_spilled_replay_a_refused_length_and_a_changed_file() {
    let (recorder, _guard) = record();
    // A streamed body past the 2 MiB cap of `send`'s stack is not spilled
    // there; use a stack with a spill.
    let server = Faulty::start([Fault::DropAfter(3 * MIB)]).await;
    let (body, _) = Streamed::random(6 * MIB as usize, 64 * 1024);
    let spill = tempfile::tempdir().unwrap();
    let stack = tower::ServiceBuilder::new()
        .layer(
            mmap_body::ReplayLayer::new(64 << 10)
                .spill_to_disk(64 * MIB)
                .spill_dir(spill.path()),
        )
        .layer(tower::retry::RetryLayer::new(
            mmap_body::retry::RetryPolicy::default()
                .backoff(Duration::from_millis(1), Duration::from_millis(2)),
        ))
        .service(mmap_body_devkit::server::client::<
            mmap_body::ReplayBody<Streamed>,
        >(false));
    let req = Request::put(server.uri("/up")).body(body).unwrap();
    let res = tower::ServiceExt::oneshot(stack, req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        recorder.events("spilling the request body to disk").len(),
        1
    );
    let retries = recorder.events("retrying request");
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].field("replay"), "spill");

    // A Content-Length the body contradicts: refused before sending.
    let req = Request::put(server.uri("/up"))
        .header("content-length", "5")
        .body(http_body_util::Full::new(Bytes::from_static(b"0123456789")))
        .unwrap();
    send(Proto::H1, TIMEOUT, req).await.expect_err("refused");
    let refused = recorder.events("request refused for its length");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].level, tracing::Level::WARN);
    assert_eq!(refused[0].field("method"), "PUT");
    assert!(refused[0].field("error").contains("5"), "{refused:?}");

    // A file changed after it was mapped.
    let file = test_file(4 * MIB);
    // SAFETY: the test changes the file on purpose; the body must notice.
    let body = unsafe { MmapBody::open(&file.path) }.unwrap();
    change(&file.path, Change::Touch);
    let req = Request::put(server.uri("/up")).body(body).unwrap();
    send(Proto::H1, TIMEOUT, req)
        .await
        .expect_err("a changed file");
    let changed = recorder.events("file changed under its mapping");
    assert!(!changed.is_empty());
    assert_eq!(changed[0].field("kind"), "modified since the body began");
    assert_eq!(changed[0].target, "mmap_body::mmap");
}

/// A download cut once, then one whose file is replaced before its
/// resume (feature `download`): `resuming download` with the offset and
/// the error, `resumed download`, then `not resuming download` saying why.
#[cfg(all(feature = "download", feature = "serve"))]
#[tokio::test]
async fn a_resumed_download_says_where_it_went_on() {
    use mmap_body_devkit::relay::{Cut, Relay};
    let (recorder, _guard) = record();
    let file = test_file(4 * MIB);
    let server = crate::download::own_server(file.path.clone()).await;
    // The first download's two connections, then the second's (a client
    // of its own: a new connection).
    let relay = Relay::start(server, [Cut::After(MIB), Cut::Pass, Cut::After(MIB)]).await;
    let service = crate::download::downloader(crate::download::layer());
    let got = crate::download::fetch(service, &relay.uri("/f"), &[], || {}).await;
    assert!(got.end.is_ok());
    let resuming = recorder.events("resuming download");
    assert_eq!(resuming.len(), 1, "{resuming:?}");
    let event = &resuming[0];
    assert_eq!(event.level, tracing::Level::DEBUG);
    assert_eq!(event.target, "mmap_body::download");
    assert_eq!(event.field("uri"), relay.uri("/f"));
    assert_eq!(event.field("offset"), got.resumed_at[0].to_string());
    assert_eq!(event.field("complete"), (4 * MIB).to_string());
    assert_eq!(
        (event.field("resume"), event.field("retry_after")),
        ("1", "false")
    );
    assert!(!event.field("error").is_empty());
    assert_eq!(recorder.events("resumed download").len(), 1);
    assert!(recorder.events("not resuming download").is_empty());

    let path = file.path.clone();
    let service = crate::download::downloader(crate::download::layer());
    let got = crate::download::fetch(service, &relay.uri("/f"), &[], move || {
        crate::download::replace(&path, 4 * MIB);
    })
    .await;
    assert!(got.end.is_err());
    let refused = recorder.events("not resuming download");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].field("status"), "200");
    assert!(refused[0].field("why").contains("200"), "{refused:?}");
}
