//! The tracing subscriber every binary installs: human-readable text by
//! default, one JSON object per line with `--log-format json`, on stderr
//! (stdout is for the lines in [`crate::protocol`]), filtered by `RUST_LOG`.

/// The `--log-format` of every binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`text`; the signer's earlier name `human` is accepted too).
    #[default]
    #[value(alias = "human")]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` when set and valid, else
/// `default_filter` (for example `"info"`).
///
/// # Panics
/// If a global subscriber is already installed (call it once, first thing in `main`).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn accepts_both_earlier_names_of_the_text_format() {
        for name in ["text", "human", "TEXT"] {
            assert_eq!(
                LogFormat::from_str(name, true),
                Ok(LogFormat::Text),
                "{name}"
            );
        }
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert!(LogFormat::from_str("yaml", false).is_err());
    }
}
