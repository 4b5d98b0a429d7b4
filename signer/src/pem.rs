//! PEM encoding of certificates (the chain and the trust bundle).

use base64::Engine as _;

/// Appends `der` as one `CERTIFICATE` block, base64 in 64-column lines, no headers.
pub(crate) fn push_certificate(out: &mut String, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
}
