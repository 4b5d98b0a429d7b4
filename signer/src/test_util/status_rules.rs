//! kube-apiserver's checks of an `Issued` PodCertificateRequest status, restated.
//!
//! Source: `pkg/apis/certificates/validation/validation.go`,
//! `ValidatePodCertificateRequestStatusUpdate` (the "transitioning to Issued" branch):
//!
//! 1. `certificateChain` at most `MaxCertificateChainSize` (100 KiB);
//! 2. the first PEM block exists, is a `CERTIFICATE` and parses as X.509;
//! 3. the leaf's DNS SANs are non-empty, contain no `..`, neither start nor end with `.`;
//!    its email SANs parse as addresses;
//! 4. the leaf carries the requested public key;
//! 5. `notBefore`, `notAfter`, `beginRefreshAt` are all set;
//! 6. `notBefore` equals the leaf's notBefore and is strictly within 5 minutes of the
//!    API server's clock;
//! 7. `notAfter` equals the leaf's notAfter;
//! 8. lifetime (leaf notAfter - notBefore) is at least 1 hour and at most
//!    `spec.maxExpirationSeconds`;
//! 9. `beginRefreshAt` is no earlier than notBefore + 10 min and no later than
//!    notAfter - 10 min;
//! 10. every further PEM block is a `CERTIFICATE` that parses.
//!
//! PEM is read like Go's `pem.Decode`: text between blocks is skipped.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::request::DEFAULT_MAX_EXPIRATION_SECONDS;
use crate::{IssuanceRequest, Issued, KeyMaterial};

/// kube-apiserver's `certificates.MaxCertificateChainSize`.
pub const MAX_CERTIFICATE_CHAIN_SIZE: usize = 100 * 1024;

/// The requested key's SubjectPublicKeyInfo, from either key source.
fn requested_spki(request: &IssuanceRequest) -> Result<Vec<u8>, String> {
    match &request.key_material {
        KeyMaterial::Pkix { public_key, .. } => Ok(public_key.clone()),
        KeyMaterial::StubPkcs10 { csr } => {
            let (_, req) =
                x509_parser::certification_request::X509CertificationRequest::from_der(csr)
                    .map_err(|e| format!("stubPKCS10Request does not parse: {e}"))?;
            Ok(req.certification_request_info.subject_pki.raw.to_vec())
        }
    }
}

/// One PEM block: label and decoded bytes.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            return Err(format!("PEM block {label} has no end line"));
        };
        let body = &body_start[..end];
        if body.contains(':') {
            return Err(format!("PEM block {label} has headers"));
        }
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("PEM block {label} is not base64: {e}"))?;
        out.push((label, der));
        rest = &body_start[end + end_marker.len()..];
    }
    Ok(out)
}

fn near(a: SystemTime, b: SystemTime, skew: Duration) -> bool {
    a > b - skew && a < b + skew
}

/// Checks `issued` against the API server's status rules for `request`, with the API
/// server's clock at `api_now`. Returns every violated rule.
pub fn check_issued_status(
    request: &IssuanceRequest,
    issued: &Issued,
    api_now: SystemTime,
) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let chain = &issued.certificate_chain;
    if chain.len() > MAX_CERTIFICATE_CHAIN_SIZE {
        return Err(vec![format!(
            "certificateChain is {} bytes, over the limit",
            chain.len()
        )]);
    }
    let blocks = pem_blocks(chain).map_err(|e| vec![e])?;
    let Some((label, leaf_der)) = blocks.first() else {
        return Err(vec![
            "issued certificate chain must contain at least one certificate".into(),
        ]);
    };
    if label != "CERTIFICATE" {
        return Err(vec![format!("first PEM block is {label}, not CERTIFICATE")]);
    }
    let leaf = match X509Certificate::from_der(leaf_der) {
        Ok((_, leaf)) => leaf,
        Err(e) => {
            return Err(vec![format!(
                "leaf certificate does not parse as X.509: {e}"
            )])
        }
    };

    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    if d.is_empty() {
                        errs.push("leaf contains an empty DNSName".to_string());
                    }
                    if d.contains("..") {
                        errs.push(format!("leaf DNSName {d:?} contains '..'"));
                    }
                    if d.starts_with('.') || d.ends_with('.') {
                        errs.push(format!("leaf DNSName {d:?} starts or ends with '.'"));
                    }
                }
                GeneralName::RFC822Name(m) if !m.contains('@') => {
                    errs.push(format!("leaf email {m:?} is not an address"));
                }
                _ => {}
            }
        }
    }

    match requested_spki(request) {
        Ok(spki) if spki == leaf.public_key().raw => {}
        Ok(_) => errs.push("leaf certificate was not issued to the requested public key".into()),
        Err(e) => errs.push(e),
    }

    let leaf_nb = SystemTime::from(leaf.validity().not_before.to_datetime());
    let leaf_na = SystemTime::from(leaf.validity().not_after.to_datetime());
    if issued.not_before != leaf_nb {
        errs.push("status.notBefore must equal the leaf's NotBefore".into());
    }
    if !near(issued.not_before, api_now, Duration::from_secs(300)) {
        errs.push(
            "status.notBefore must be within 5 minutes of kube-apiserver's current time".into(),
        );
    }
    if issued.not_after != leaf_na {
        errs.push("status.notAfter must equal the leaf's NotAfter".into());
    }
    let lifetime = leaf_na.duration_since(leaf_nb).unwrap_or_default();
    if lifetime < Duration::from_secs(3600) {
        errs.push(format!("leaf lifetime {lifetime:?} is under 1 hour"));
    }
    let max = request
        .max_expiration_seconds
        .unwrap_or(DEFAULT_MAX_EXPIRATION_SECONDS);
    if lifetime > Duration::from_secs(u64::try_from(max).unwrap_or(0)) {
        errs.push(format!(
            "leaf lifetime {lifetime:?} exceeds spec.maxExpirationSeconds ({max})"
        ));
    }
    if issued.begin_refresh_at < issued.not_before + Duration::from_secs(600) {
        errs.push("beginRefreshAt must be at least 10 minutes after status.notBefore".into());
    }
    if issued.begin_refresh_at > issued.not_after - Duration::from_secs(600) {
        errs.push("beginRefreshAt must be at least 10 minutes before status.notAfter".into());
    }
    for (i, (label, der)) in blocks.iter().enumerate().skip(1) {
        if label != "CERTIFICATE" {
            errs.push(format!("chain block {i} is {label}, not CERTIFICATE"));
        } else if X509Certificate::from_der(der).is_err() {
            errs.push(format!("chain block {i} does not parse as X.509"));
        }
    }

    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}
