//! What a test prints and how it runs itself again: an error and its
//! sources on one line, and a test's own name for `--exact`.

/// An error and its sources, on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(err) = next {
        out.push_str(" <- ");
        out.push_str(&err.to_string());
        next = err.source();
    }
    out
}

/// The name the test harness gives the test `test` of the module whose
/// `module_path!()` is `module_path`: what `--exact` wants to run it alone
/// in a child process (the crate's name left out, the modules kept).
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

/// How a child process of [`run_child`] ended, and what it printed.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status (`ExitStatusExt::signal` tells a signal).
    pub status: std::process::ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs the test `test` of the running test binary (whose module is
/// `module_path`, as `module_path!()` says) alone in a child process, with
/// the environment variable `var` set to `case`, and waits at most
/// `timeout`: past it the child is killed and this panics with what it
/// printed. Both pipes are drained while it runs, so it never blocks on a
/// full one.
pub fn run_child(
    module_path: &str,
    test: &str,
    var: &str,
    case: &str,
    timeout: std::time::Duration,
) -> Ended {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .arg("--exact")
        .arg(test_name(module_path, test))
        .args(["--nocapture", "--test-threads=1"])
        .env(var, case)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    match status {
        Some(status) => Ended {
            status,
            stdout,
            stderr,
        },
        None => {
            panic!("{test} ({var}={case}) ran past {timeout:?} and was killed:\n{stdout}{stderr}")
        }
    }
}
