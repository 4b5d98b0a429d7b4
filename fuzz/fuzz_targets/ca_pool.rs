//! The signer's CA pool JSON (`signer::CaPool::from_json`).
//!
//! An accepted pool serializes back (`to_json`) to JSON that parses to the
//! same CAs, with the same signing CA first; its trust bundle is fed to
//! podtls' parser (as clients would read the ClusterTrustBundle).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtls::{Origin, TrustBundle};
use signer::CaPool;

fuzz_target!(|data: &[u8]| {
    let Ok(pool) = CaPool::from_json(data) else {
        return;
    };
    assert!(!pool.cas().is_empty());
    let again = CaPool::from_json(&pool.to_json()).expect("a written pool parses");
    assert_eq!(again.signing_ca().id(), pool.signing_ca().id());
    assert_eq!(
        again.cas()[0].id(),
        pool.signing_ca().id(),
        "signing CA first"
    );
    let mut ids: Vec<&str> = pool.cas().iter().map(|c| c.id()).collect();
    let mut ids_again: Vec<&str> = again.cas().iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids_again.sort_unstable();
    assert_eq!(ids, ids_again);
    for b in again.cas() {
        let a = pool
            .cas()
            .iter()
            .find(|c| c.id() == b.id())
            .expect("same IDs");
        assert_eq!(a.root_der(), b.root_der());
        assert_eq!(a.intermediates_der(), b.intermediates_der());
        assert_eq!(a.key_type(), b.key_type());
    }
    let bundle = pool.trust_bundle_pem();
    assert!(!bundle.is_empty());
    let _ = TrustBundle::from_pem(bundle.as_bytes(), &Origin::memory("fuzz pool bundle"));
});
