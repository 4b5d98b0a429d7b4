//! What podtls reports about a certificate: serial, validity, names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::spiffe_id::SpiffeId;

/// A summary of one certificate, safe to log and to expose in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// Start of the validity window.
    pub not_before: SystemTime,
    /// End of the validity window.
    pub not_after: SystemTime,
    /// The SPIFFE ID, when the certificate is a valid X509-SVID.
    pub spiffe_id: Option<SpiffeId>,
    /// DNS SANs, in certificate order.
    pub dns_names: Vec<String>,
}

impl CertInfo {
    /// Summarises a parsed certificate. `spiffe_id` is filled in only when the
    /// certificate is a valid X509-SVID.
    pub(crate) fn from_parsed(cert: &X509Certificate<'_>) -> Self {
        let validity = cert.validity();
        CertInfo {
            serial: serial_hex(cert),
            not_before: asn1_to_system(validity.not_before.timestamp()),
            not_after: asn1_to_system(validity.not_after.timestamp()),
            spiffe_id: crate::svid::svid_id(cert).ok(),
            dns_names: dns_names(cert),
        }
    }

    /// Parses `der` and summarises it.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        Ok(Self::from_parsed(&cert))
    }

    /// The total lifetime (not_after - not_before).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// The fraction of the lifetime elapsed at `now`, clamped to `0.0..=1.0` for
    /// times before not_before; above 1.0 once expired.
    pub fn elapsed_fraction(&self, now: SystemTime) -> f64 {
        let total = self.lifetime().as_secs_f64();
        if total <= 0.0 {
            return f64::INFINITY;
        }
        let elapsed = now
            .duration_since(self.not_before)
            .unwrap_or_default()
            .as_secs_f64();
        elapsed / total
    }
}

pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let raw = cert.raw_serial();
    let trimmed = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &raw[raw.len().saturating_sub(1)..],
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn asn1_to_system(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// Formats a time as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
pub fn format_time(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => dt
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| format!("@{secs}")),
        Err(_) => format!("@{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(UNIX_EPOCH + Duration::from_secs(1_767_323_045)),
            "2026-01-02T03:04:05Z"
        );
    }
}
