//! The crate's errors and what their variants carry.
//!
//! The three error enums are also at the crate root: [`Error`] (loading,
//! validating and watching material; building configurations),
//! [`VerifyError`] (why a peer was not accepted) and [`HandshakeError`] (why
//! a handshake gave no usable connection). The other types here are the
//! details their variants hold, and the errors of the parsers they wrap.

use std::error::Error as StdError;
use std::path::PathBuf;

pub use crate::authorizer::Unauthorized;
pub use crate::handshake::HandshakeError;
pub use crate::issuing_cluster::IssuingClusterError;
pub use crate::key_type::UnknownKeyType;
pub use crate::peer_verification::{ChainFailure, ExtensionError, VerifyError};
pub use crate::pod_identity::PodIdentityError;
pub use crate::publisher::PublishError;
pub use crate::spiffe_id::SpiffeIdError;
pub use crate::svid::SvidError;
pub use crate::trust_bundle::AnchorRejection;
use std::time::SystemTime;

/// Where a piece of material came from, for error messages: a file path or
/// a label for in-memory PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// A file on disk.
    pub fn file(path: &std::path::Path) -> Self {
        Origin(path.display().to_string())
    }

    /// In-memory material, described by `label` (for example "credential bundle bytes").
    pub fn memory(label: &str) -> Self {
        Origin(format!("<{label}>"))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a path was found to be when a regular file was expected
/// ([`Error::NotAFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
    /// Something else that is not a regular file.
    Other,
}

impl FileKind {
    /// Classifies a file type; `None` for a regular file.
    pub(crate) fn of(file_type: std::fs::FileType) -> Option<FileKind> {
        if file_type.is_file() {
            return None;
        }
        if file_type.is_dir() {
            return Some(FileKind::Directory);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return Some(FileKind::Fifo);
            }
            if file_type.is_socket() {
                return Some(FileKind::Socket);
            }
            if file_type.is_block_device() {
                return Some(FileKind::BlockDevice);
            }
            if file_type.is_char_device() {
                return Some(FileKind::CharDevice);
            }
        }
        Some(FileKind::Other)
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::BlockDevice => "a block device",
            FileKind::CharDevice => "a character device",
            FileKind::Other => "something else",
        })
    }
}

/// Everything that can go wrong loading, validating or watching pod TLS material.
///
/// Every variant names the file (or in-memory origin) it is about and what is
/// wrong with it, so that the message alone is enough to fix the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A source path (after following symlinks) is not a regular file; it
    /// was not read (a FIFO would block the reader, a device may never end).
    #[error("{path} is {kind}, not a regular file")]
    NotAFile {
        /// The path as configured.
        path: PathBuf,
        /// What it turned out to be.
        kind: FileKind,
    },

    /// A source file is larger than [`crate::reload::ReloadTiming::max_file_size`];
    /// at most the limit plus one byte of it was read.
    #[error("{path} is larger than the limit of {limit} bytes (ReloadTiming::max_file_size)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in force, in bytes.
        limit: u64,
    },

    /// A parser (or the material's [`crate::reload::Material::summary`]) panicked on
    /// a source's contents: a bug in it. The panic was caught, the previous
    /// material stays and reloading goes on.
    #[error("{what}: the parser panicked on {files}: {message}")]
    ParserPanicked {
        /// The store being loaded (for example "credentials /var/run/tls/bundle.pem").
        what: String,
        /// The files that were being parsed, comma-separated.
        files: String,
        /// The panic message, when it was a string.
        message: String,
    },

    /// The PEM text itself is malformed (bad base64, unterminated block, ...).
    #[error("{origin}: malformed PEM: {source}")]
    Pem {
        /// Where the PEM came from.
        origin: Origin,
        /// What the PEM parser reported.
        #[source]
        source: rustls::pki_types::pem::Error,
    },

    /// No usable private key block was found.
    #[error("{origin}: no PRIVATE KEY block found (expected a PKCS#8 \"PRIVATE KEY\" PEM block)")]
    MissingPrivateKey {
        /// Where the key should have been.
        origin: Origin,
    },

    /// More than one private key block was found.
    #[error("{origin}: more than one private key block")]
    MultiplePrivateKeys {
        /// Where the keys were found.
        origin: Origin,
    },

    /// The private key could not be loaded (unsupported algorithm or corrupt key).
    #[error("{origin}: unusable private key: {source}")]
    PrivateKey {
        /// Where the key came from.
        origin: Origin,
        /// Why the crypto provider could not load it.
        #[source]
        source: rustls::Error,
    },

    /// No certificate block was found where a chain was expected.
    #[error("{origin}: no CERTIFICATE block found")]
    MissingCertificate {
        /// Where the chain should have been.
        origin: Origin,
    },

    /// A certificate is not valid DER X.509.
    #[error("{origin}: certificate #{index} cannot be parsed: {source}")]
    Certificate {
        /// Where the certificate came from.
        origin: Origin,
        /// Its position in the file (0 = first).
        index: usize,
        /// What the X.509 parser reported.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The private key does not belong to the leaf certificate.
    #[error("{origin}: private key does not match the leaf certificate's public key")]
    KeyMismatch {
        /// Where the key and chain came from.
        origin: Origin,
    },

    /// The leaf certificate is not valid yet.
    #[error("{origin}: leaf certificate (serial {serial}) is not valid until {not_before}")]
    NotYetValid {
        /// Where the leaf came from.
        origin: Origin,
        /// Its serial number.
        serial: String,
        /// When it becomes valid, RFC 3339.
        not_before: String,
    },

    /// The leaf certificate has expired.
    #[error("{origin}: leaf certificate (serial {serial}) expired at {not_after}")]
    Expired {
        /// Where the leaf came from.
        origin: Origin,
        /// Its serial number.
        serial: String,
        /// When it expired, RFC 3339.
        not_after: String,
    },

    /// The leaf certificate is a CA certificate.
    #[error("{origin}: leaf certificate (serial {serial}) is a CA certificate (basicConstraints cA=true)")]
    LeafIsCa {
        /// Where the leaf came from.
        origin: Origin,
        /// Its serial number.
        serial: String,
    },

    /// The leaf is not a valid X509-SVID although SPIFFE credentials were required.
    #[error("{origin}: leaf certificate is not a valid X509-SVID: {reason}")]
    InvalidSvid {
        /// Where the leaf came from.
        origin: Origin,
        /// What is wrong with it.
        #[source]
        reason: SvidError,
    },

    /// A trust bundle contains no certificate.
    #[error("{origin}: trust bundle contains no CA certificate")]
    EmptyTrustBundle {
        /// Where the bundle came from.
        origin: Origin,
    },

    /// A trust bundle certificate cannot be used as a trust anchor.
    #[error("{origin}: certificate #{index} cannot be used as a trust anchor: {source}")]
    TrustAnchor {
        /// Where the bundle came from.
        origin: Origin,
        /// The certificate's position in the file.
        index: usize,
        /// Why it was rejected (the WebPKI or X.509 parser's error).
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A trust anchor published for one SPIFFE trust domain names another
    /// trust domain in its URI SAN (SPIRE's CA certificates carry
    /// `spiffe://<trust domain>`): a CA of one trust domain never vouches
    /// for another, so the bundle is refused.
    #[error("{origin}: certificate #{index} names {uri} but is given as a trust anchor of {trust_domain}")]
    ForeignTrustAnchor {
        /// Where the bundle came from.
        origin: Origin,
        /// The certificate's position in the bundle.
        index: usize,
        /// The trust domain the bundle was given for.
        trust_domain: String,
        /// The SPIFFE ID the certificate names.
        uri: String,
    },

    /// A source of material outside the file system (for example the SPIFFE
    /// Workload API) failed; the last good material is still served.
    #[error("{what}: {cause}")]
    SourceFailed {
        /// The source (for example "SPIFFE Workload API unix:/run/spire/agent.sock").
        what: String,
        /// What went wrong.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A SPIFFE ID or trust domain given in configuration is invalid.
    #[error("invalid SPIFFE ID or trust domain {value:?}: {reason}")]
    InvalidSpiffeId {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        #[source]
        reason: SpiffeIdError,
    },

    /// An authorization rule string is malformed ([`crate::Authorizer::parse`]).
    #[error("authorization rule {rule:?} is malformed: {reason}")]
    InvalidRule {
        /// The rule as given.
        rule: String,
        /// What is wrong.
        reason: String,
    },

    /// An `issuer:` authorization rule names a URL that is not a valid
    /// issuing cluster ([`crate::Authorizer::parse`]).
    #[error("authorization rule {rule:?} names an invalid issuer: {reason}")]
    InvalidIssuer {
        /// The rule as given.
        rule: String,
        /// What is wrong with the URL.
        #[source]
        reason: IssuingClusterError,
    },

    /// The application's parser rejected a watched file ([`crate::reload::FileWatch`]).
    #[error("{origin}: {source}")]
    Rejected {
        /// The file.
        origin: Origin,
        /// What the parser reported.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The file watcher could not be set up.
    #[error("cannot watch {path}: {detail}")]
    Watch {
        /// The directory being watched.
        path: PathBuf,
        /// The watcher's error.
        detail: String,
    },

    /// Material did not become ready in time.
    #[error("{what} not ready after {waited:?}; last error: {last_error}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        waited: std::time::Duration,
        /// The most recent load error, or "none".
        last_error: String,
    },

    /// Configuration that cannot work (for example a SPIFFE policy with no bundles).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An error from rustls while building a configuration.
    #[error("TLS configuration error: {0}")]
    Tls(#[from] rustls::Error),
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    crate::cert_info::format_time(t)
}
