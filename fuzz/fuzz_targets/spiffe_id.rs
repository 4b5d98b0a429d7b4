//! SPIFFE ID and trust-domain parsing (`parse_spiffe_id`, `parse_trust_domain`).
//!
//! Input: UTF-8 text (other bytes are skipped). Checks the `Display`
//! round-trip: a parsed ID prints as its input and re-parses to an equal
//! value; the same for trust domains; an ID's trust domain parses on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtls::{certificate::MAX_SPIFFE_ID_LEN, parse_spiffe_id, parse_trust_domain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = parse_spiffe_id(text) {
        let shown = id.to_string();
        assert_eq!(shown, text, "a strictly parsed ID prints as its input");
        assert!(shown.len() <= MAX_SPIFFE_ID_LEN);
        assert_eq!(parse_spiffe_id(&shown).as_ref(), Ok(&id), "ID round-trip");
        let td = id.trust_domain().to_string();
        assert_eq!(
            parse_trust_domain(&td).as_ref(),
            Ok(id.trust_domain()),
            "an ID's trust domain parses on its own"
        );
    }
    if let Ok(td) = parse_trust_domain(text) {
        let shown = td.to_string();
        assert_eq!(
            parse_trust_domain(&shown).as_ref(),
            Ok(&td),
            "trust domain round-trip"
        );
        let root = format!("spiffe://{}", td.as_str());
        let id = parse_spiffe_id(&root).expect("a trust domain's own ID parses");
        assert_eq!(id.trust_domain(), &td);
    }
});
