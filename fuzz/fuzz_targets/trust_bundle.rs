//! Trust bundle parsing: `TrustBundle::from_pem` over arbitrary bytes.
//!
//! An accepted bundle is never empty, holds distinct certificates and one
//! trust anchor per certificate.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use podtls::{Origin, TrustBundle};

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = TrustBundle::from_pem(data, &Origin::memory("fuzz trust bundle")) else {
        return;
    };
    assert!(!bundle.is_empty());
    assert_eq!(bundle.len(), bundle.certificates().len());
    assert_eq!(bundle.anchors().len(), bundle.len());
    let distinct: BTreeSet<&[u8]> = bundle.certificates().iter().map(|c| c.as_ref()).collect();
    assert_eq!(distinct.len(), bundle.len(), "duplicates were not dropped");
});
