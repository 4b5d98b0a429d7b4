//! X509-SVID leaf validation: `validate_svid_leaf_der` over arbitrary DER,
//! plus the certificate summary (`CertInfo::from_der`) of the same bytes.
//!
//! An accepted leaf's SPIFFE ID has a path, re-parses to an equal value, and is
//! the ID the summary reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtls::{certificate::CertInfo, parse_spiffe_id, verification::validate_svid_leaf_der};

fuzz_target!(|data: &[u8]| {
    let svid = validate_svid_leaf_der(data);
    let info = CertInfo::from_der(data);
    let Ok(id) = svid else {
        return;
    };
    assert!(!id.path().is_empty(), "leaf SVID without a path");
    assert_eq!(parse_spiffe_id(&id.to_string()).as_ref(), Ok(&id));
    let info = info.expect("a valid SVID parses as a certificate");
    assert_eq!(info.spiffe_id.as_ref(), Some(&id));
});
