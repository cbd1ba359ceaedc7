//! `multipart::Form` uploads (issue #34) read by Python parsers no one here
//! wrote: python-multipart (Starlette's and FastAPI's streaming parser)
//! behind a small `http.server` (`peers/multipart_server.py`), and moto, a
//! real S3 implementation, taking a browser-style POST-policy upload of a
//! 256 MiB file that is then read back from it and compared by SHA-256.
//!
//! Both run from the venv under `target/interop/venv` (see
//! [`venv`](super::venv)), with the packages [`PACKAGES`] pins.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use mmap_body::multipart::{Form, FormBody, Part};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::files::{hex, test_file};
use mmap_body_devkit::server::client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use super::{free_port, peer, record, spawn_listening, venv, wait_for_port, Peer};
use crate::multipart_form::{tricky_form, Seen};

/// The packages, pinned so that the table's versions are the run's.
const PACKAGES: [&str; 2] = ["python-multipart==0.0.34", "moto[server]==5.2.5"];
const LIMIT: Duration = Duration::from_secs(300);

fn script(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/interop/peers")
        .join(name)
}

/// What python-multipart saw of one part, as `Seen`.
fn seen(part: &Value) -> Seen {
    let text = |key: &str| part[key].as_str().map(str::to_owned);
    Seen {
        name: text("name").expect("a name"),
        file_name: text("filename"),
        content_type: text("content_type"),
        len: part["len"].as_u64().expect("a length"),
        sha256: text("sha256").expect("a hash"),
    }
}

/// Every part of a form whose names need every escape, a 100 KB in-memory
/// file and a 3 MiB mapped one, as python-multipart parsed them.
#[tokio::test]
async fn python_multipart_reads_every_part() {
    let Some(python) = venv(&PACKAGES) else {
        return;
    };
    let script = script("multipart_server.py");
    let script_arg = script.to_str().expect("a UTF-8 path");
    let Some(found) = peer(&python, &[script_arg, "--version"], |line| {
        line.starts_with("python-multipart ")
            .then(|| line.to_owned())
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(&found.program);
    command
        .arg(&script)
        .arg("--log")
        .arg(dir.path().join("log.jsonl"));
    let (_child, port) = spawn_listening(command, &found.version).await;

    let file = test_file((3 << 20) + 17);
    // python-multipart reads parameters quote by quote: a name cannot hide
    // a `filename` from it.
    let (form, expected) = tricky_form(&file.path, false);
    let content_type = form.content_type();
    let body = form.into_body();
    let len = body.len();
    let request = http::Request::post(format!("http://127.0.0.1:{port}/form"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(LIMIT, client::<FormBody>(false).request(request))
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let report: Value = serde_json::from_slice(&bytes).expect("the peer's JSON report");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["content_length"], len, "{report}");
    assert_eq!(report["received"], len, "{report}");
    let parts: Vec<Seen> = report["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(seen)
        .collect();
    assert_eq!(parts, expected);
    record(
        "multipart-python-multipart",
        "python-multipart",
        &found.version,
        "HTTP/1.1",
        "`multipart::Form` of 8 parts (escaped names: `\"`, CR LF, `; filename=`; UTF-8 file \
         name; 100 KB bytes; 3 MiB `MmapBody` and `FileBody`; empty): every name, file name, \
         type, length and SHA-256 as sent",
    );
}

// ------------------------------------------------------------------ moto

/// HMAC-SHA256 (RFC 2104) over sha2, for the POST policy's signature.
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of `now` (UTC).
fn amz_dates(now: SystemTime) -> (String, String) {
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    (date, stamp)
}

/// The fields of an S3 POST-policy upload of `key` to `bucket` (AWS
/// Signature Version 4, "Browser-Based Uploads Using POST"), signed with
/// moto's default test credentials.
fn post_policy_fields(bucket: &str, key: &str, len: u64) -> Vec<(&'static str, String)> {
    const REGION: &str = "us-east-1";
    const ACCESS_KEY: &str = "testing";
    const SECRET_KEY: &str = "testing";
    let now = SystemTime::now();
    let (date, stamp) = amz_dates(now);
    let (expires, _) = amz_dates(now + Duration::from_secs(3600));
    let credential = format!("{ACCESS_KEY}/{date}/{REGION}/s3/aws4_request");
    let expiration = format!(
        "{}-{}-{}T23:59:59Z",
        &expires[..4],
        &expires[4..6],
        &expires[6..8]
    );
    let policy = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": bucket},
            {"key": key},
            {"acl": "public-read"},
            ["content-length-range", len, len],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": stamp},
        ]
    });
    let policy = base64(policy.to_string().as_bytes());
    let mut signing = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        signing = hmac(&signing, part.as_bytes());
    }
    let signature = hex(&hmac(&signing, policy.as_bytes()));
    vec![
        ("key", key.to_owned()),
        ("acl", "public-read".to_owned()),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential", credential),
        ("x-amz-date", stamp),
        ("policy", policy),
        ("x-amz-signature", signature),
    ]
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_and_hmac_match_their_rfcs() {
    // RFC 4648 §10.
    for (plain, coded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), coded);
    }
    // RFC 4231 test case 2.
    assert_eq!(
        hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        amz_dates(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ("20231114".to_owned(), "20231114T221320Z".to_owned())
    );
}

/// moto (`moto[server]`), a real S3 implementation, takes a browser-style
/// POST-policy upload of a 256 MiB `MmapBody` file part, sent through
/// `ReplayLayer` + `RetryLayer` as a `FormBody`; the object then read back
/// from it has the file's SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_takes_a_post_policy_upload_of_256_mib() {
    let Some(python) = venv(&PACKAGES) else {
        return;
    };
    let Some(found): Option<Peer> = peer(
        &python,
        &["-c", "import moto; print('moto ' + moto.__version__)"],
        |line| line.starts_with("moto ").then(|| line.to_owned()),
    ) else {
        return;
    };
    let port = free_port();
    let _moto = tokio::process::Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto");
    wait_for_port(port, &found.version).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = client::<http_body_util::Full<bytes::Bytes>>(false);
    let bucket = "uploads";
    let created = http
        .request(
            http::Request::put(format!("{base}/{bucket}"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "CreateBucket");

    let len = 256u64 << 20;
    let file = test_file(len);
    // SAFETY: the temp file is private to this test.
    let mapped = unsafe { MmapBody::open(&file.path) }.unwrap();
    let key = "videos/holiday.mp4";
    let form = post_policy_fields(bucket, key, len)
        .into_iter()
        .fold(Form::new(), |form, (name, value)| form.text(name, value))
        // S3 takes the file last: fields after it are ignored.
        .part(
            "file",
            Part::mmap(mapped)
                .file_name("holiday.mp4")
                .mime_str("video/mp4")
                .unwrap(),
        );
    let content_type = form.content_type();
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(RetryPolicy::default()))
        .service(client::<ReplayBody<FormBody>>(false));
    let request = http::Request::post(format!("{base}/{bucket}"))
        .header(CONTENT_TYPE, content_type)
        .body(form.into_body())
        .unwrap();
    let response = tokio::time::timeout(LIMIT, service.oneshot(request))
        .await
        .expect("in time")
        .unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{status}: {text:?}");

    // Read back anonymously (the policy made it public-read), hashed as
    // it streams.
    let get = http::Request::get(format!("{base}/{bucket}/{key}"))
        .body(Default::default())
        .unwrap();
    let object = http.request(get).await.unwrap();
    assert_eq!(object.status(), 200);
    let mut body = object.into_body();
    let (mut got, mut sha) = (0u64, Sha256::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            got += data.len() as u64;
            sha.update(&data);
        }
    }
    assert_eq!(got, len);
    assert_eq!(hex(&sha.finalize()), file.sha256);
    record(
        "multipart-moto",
        "moto (S3)",
        &found.version,
        "HTTP/1.1",
        "S3 POST-policy upload (`multipart::Form`: key, acl, policy, SigV4 fields, 256 MiB \
         `MmapBody` file part) through `ReplayLayer` + `RetryLayer` → `204`; the object read \
         back: 256 MiB, SHA-256 equal",
    );
}
