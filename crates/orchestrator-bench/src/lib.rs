//! What the HTTP benchmarks share (`bench-http` and `soak`): the release
//! server as a child process on a fresh database, and latency samples.

pub mod latency;
pub mod server;

/// The environment variable `name` parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
