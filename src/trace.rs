//! `tracing` events (feature `tracing`, off by default): the decisions a
//! person asks about when an upload was retried, or was not. Without the
//! feature the macro expands to nothing and its arguments are not
//! evaluated.
//!
//! Targets are the modules (`mmap_body::retry`, `mmap_body::resume`,
//! `mmap_body::replay`, `mmap_body::mmap`); fields that tower-http's
//! `TraceLayer` also records carry its names (`method`, `uri`, `status`).

/// `tracing::event!(...)` with feature `tracing`; nothing without.
macro_rules! trace_event {
    ($($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!($($arg)*);
        }
    }};
}

pub(crate) use trace_event;
