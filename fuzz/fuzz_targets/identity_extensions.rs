//! The identity extensions a verified leaf may carry: the PodIdentity value
//! (`PodIdentity::from_der`) and the Subject Information Access value naming the
//! issuing cluster (`IssuingCluster::from_sia_der`).
//!
//! Input: the raw extension value. Checks that neither decoder panics, and that
//! whatever decodes re-encodes to an equal value: a PodIdentity exactly to the input
//! (DER is canonical), an issuing cluster to an SIA value that decodes to it again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtls::{IssuingCluster, PodIdentity};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = PodIdentity::from_der(data) {
        let again = id.to_der().expect("a decoded PodIdentity encodes");
        assert_eq!(again, data, "PodIdentity DER round-trip");
    }
    if let Ok(Some(cluster)) = IssuingCluster::from_sia_der(data) {
        let again = cluster.to_sia_der().expect("a decoded issuer encodes");
        assert_eq!(
            IssuingCluster::from_sia_der(&again),
            Ok(Some(cluster)),
            "issuing cluster round-trip"
        );
    }
});
