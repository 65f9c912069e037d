//! Logging set-up shared by every binary.

use tracing_subscriber::EnvFilter;

/// Text logs to stderr by default; `json` for log shippers. `RUST_LOG` overrides the level.
pub fn init(format: &str, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
