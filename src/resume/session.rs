//! [`Session`]: what the attempts of one request know about its resumable
//! upload. It lives in the state every clone of the request's
//! [`ReplayBody`](crate::ReplayBody) shares, so each retry that
//! `tower::retry` sends finds it, and so does the retry policy.

use std::sync::Mutex;

use http::Uri;

use crate::sync::lock;

/// Where a request's resumable upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing is known about the server yet.
    New,
    /// The target does not take resumable uploads (or this request is not
    /// one to resume): attempts are plain.
    Plain,
    /// An upload resource at this URI holds the first part of the body.
    Created(Uri),
    /// The server answered the request that completed the upload.
    Done,
}

/// One request's resumable upload, shared by its attempts.
#[derive(Debug)]
pub(crate) struct Session {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stage: Stage,
    /// The offset each append started at, in order.
    appends: Vec<u64>,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            state: Mutex::new(State {
                stage: Stage::New,
                appends: Vec::new(),
            }),
        }
    }
}

impl Session {
    pub(crate) fn stage(&self) -> Stage {
        lock(&self.state).stage.clone()
    }

    pub(crate) fn set(&self, stage: Stage) {
        lock(&self.state).stage = stage;
    }

    /// An upload resource holds part of the body: a retry sends only the
    /// rest, after asking how much arrived, so any method may be retried.
    pub(crate) fn resuming(&self) -> bool {
        matches!(lock(&self.state).stage, Stage::Created(_))
    }

    pub(crate) fn appending_from(&self, offset: u64) {
        lock(&self.state).appends.push(offset);
    }

    pub(crate) fn appends(&self) -> Vec<u64> {
        lock(&self.state).appends.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_created_upload_is_resumed() {
        let session = Session::default();
        assert!(!session.resuming());
        session.set(Stage::Created(Uri::from_static("http://127.0.0.1/u/1")));
        assert!(session.resuming());
        session.appending_from(0);
        session.appending_from(700);
        assert_eq!(session.appends(), [0, 700]);
        session.set(Stage::Done);
        assert!(!session.resuming());
        assert_eq!(session.stage(), Stage::Done);
    }
}
