//! What a user gets without choosing features: the defaults of
//! `Cargo.toml` turn on what the README promises to hyper-util and reqwest
//! users (a refused connect retried for any method: `hyper-errors`; a body
//! that yields its tokio worker: `tokio`).

/// The names in `default = [...]` of the crate's `Cargo.toml`.
fn default_features() -> Vec<String> {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let line = manifest
        .lines()
        .find(|line| line.starts_with("default = ["))
        .expect("a default feature list");
    line.trim_start_matches("default = [")
        .trim_end_matches(']')
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_owned())
        .collect()
}

#[test]
fn the_defaults_make_the_readme_true() {
    let defaults = default_features();
    for needed in [
        "replay",
        "retry",
        "progress",
        "serve",
        "tokio",
        "hyper-errors",
    ] {
        assert!(
            defaults.iter().any(|name| name == needed),
            "feature {needed} is not on by default: {defaults:?}"
        );
    }
}
