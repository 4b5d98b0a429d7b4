//! The SPIFFE Filesystem Delivery credential folder's file names (pure: no
//! file system access; the reloader lists the folder and asks this module
//! what each name is).
//!
//! A credential folder (draft SPIFFE Filesystem Delivery standard, spiffe/spiffe
//! PR 376) holds:
//! - `credential-bundle.private-key.x509.pem`: a PKCS#8 `PRIVATE KEY`, then
//!   the chain, leaf first, without the root;
//! - `<trust-domain>.spiffe-trust-bundle.x509.pem`: one per trust domain the
//!   workload may verify peers of (its own included).
//!
//! Earlier revisions of the draft named them `credential-bundle.private-key.pem`
//! and `<trust-domain>.spiffe-trust-bundle.pem`; both are accepted. When both
//! names of one file are present, the newest name (`.x509.pem`) wins and the
//! other is ignored. Every other name is ignored: kubelet's own entries
//! (`..data`, `..<timestamp>`), other files a provisioning system keeps there,
//! and trust bundle names whose trust domain is invalid (reported, once, as a
//! warning by the reloader).

use std::collections::BTreeMap;

use crate::spiffe_id::{parse_trust_domain, SpiffeIdError, TrustDomain};

/// The environment variable that names the credential folder by convention
/// (the draft standard's Kubernetes example; the demos read it).
pub const SPIFFE_CREDENTIAL_FOLDER_ENV: &str = "SPIFFE_CREDENTIAL_FOLDER";

/// The credential bundle's file name (newest revision of the draft).
pub const CREDENTIAL_BUNDLE_FILE: &str = "credential-bundle.private-key.x509.pem";

/// The credential bundle's file name in earlier revisions of the draft.
pub const CREDENTIAL_BUNDLE_FILE_OLD: &str = "credential-bundle.private-key.pem";

/// A trust bundle's file name is `<trust domain>` followed by this suffix.
pub const TRUST_BUNDLE_SUFFIX: &str = ".spiffe-trust-bundle.x509.pem";

/// The trust bundle suffix of earlier revisions of the draft.
pub const TRUST_BUNDLE_SUFFIX_OLD: &str = ".spiffe-trust-bundle.pem";

/// The file name of `trust_domain`'s bundle, as the newest revision writes it.
pub fn trust_bundle_file_name(trust_domain: &TrustDomain) -> String {
    format!("{trust_domain}{TRUST_BUNDLE_SUFFIX}")
}

/// Which revision of the draft a file name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Revision {
    /// `*.pem` without `.x509`.
    Old,
    /// `*.x509.pem`.
    New,
}

/// What one directory entry of a credential folder is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Name {
    /// The credential bundle.
    CredentialBundle(Revision),
    /// The trust bundle of a trust domain.
    TrustBundle(TrustDomain, Revision),
    /// Named like a trust bundle, but the trust domain is not valid: ignored,
    /// with a warning.
    BadTrustDomain(SpiffeIdError),
    /// Anything else: ignored silently.
    Other,
}

/// Classifies one file name of a credential folder.
pub(crate) fn classify(name: &str) -> Name {
    match name {
        CREDENTIAL_BUNDLE_FILE => return Name::CredentialBundle(Revision::New),
        CREDENTIAL_BUNDLE_FILE_OLD => return Name::CredentialBundle(Revision::Old),
        _ => {}
    }
    // kubelet's atomic writer keeps `..data`, `..data_tmp` and
    // `..<timestamp>` next to the user's files; none is ever ours.
    if name.starts_with("..") {
        return Name::Other;
    }
    let (td, revision) = if let Some(td) = name.strip_suffix(TRUST_BUNDLE_SUFFIX) {
        (td, Revision::New)
    } else if let Some(td) = name.strip_suffix(TRUST_BUNDLE_SUFFIX_OLD) {
        (td, Revision::Old)
    } else {
        return Name::Other;
    };
    // A trust domain is a DNS-like name: never empty, never starting with a
    // dot (the `spiffe` crate's character set alone would let `.` and `..`
    // through). `/` cannot occur in a file name; `spiffe:` is refused so a
    // name cannot use `parse_trust_domain`'s configuration convenience.
    if td.starts_with('.') || td.starts_with("spiffe:") {
        return Name::BadTrustDomain(SpiffeIdError::Syntax(
            spiffe::SpiffeIdError::BadTrustDomainChar,
        ));
    }
    match parse_trust_domain(td) {
        Ok(td) => Name::TrustBundle(td, revision),
        Err(e) => Name::BadTrustDomain(e),
    }
}

/// The files of a credential folder that are read, chosen from a listing.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Selection {
    /// The credential bundle's file name, if present.
    pub(crate) credential_bundle: Option<String>,
    /// Each trust domain's bundle file name.
    pub(crate) trust_bundles: BTreeMap<TrustDomain, String>,
    /// Names that look like trust bundles but name no valid trust domain,
    /// and why.
    pub(crate) bad_names: Vec<(String, SpiffeIdError)>,
}

/// Picks the files to read from the names in a folder: the newest revision's
/// name wins when both are present.
pub(crate) fn select<'a>(names: impl IntoIterator<Item = &'a str>) -> Selection {
    let mut out = Selection::default();
    let mut cred_rev = None;
    let mut td_rev: BTreeMap<TrustDomain, Revision> = BTreeMap::new();
    for name in names {
        match classify(name) {
            Name::CredentialBundle(rev) => {
                if cred_rev.is_none_or(|r| rev > r) {
                    cred_rev = Some(rev);
                    out.credential_bundle = Some(name.to_string());
                }
            }
            Name::TrustBundle(td, rev) => {
                if td_rev.get(&td).is_none_or(|r| rev > *r) {
                    td_rev.insert(td.clone(), rev);
                    out.trust_bundles.insert(td, name.to_string());
                }
            }
            Name::BadTrustDomain(e) => out.bad_names.push((name.to_string(), e)),
            Name::Other => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(s: &str) -> TrustDomain {
        parse_trust_domain(s).unwrap()
    }

    #[test]
    fn accepts_both_revisions_and_the_newest_name_wins_in_any_order() {
        for names in [
            [
                "credential-bundle.private-key.pem",
                "credential-bundle.private-key.x509.pem",
                "a.example.spiffe-trust-bundle.pem",
                "a.example.spiffe-trust-bundle.x509.pem",
            ],
            [
                "a.example.spiffe-trust-bundle.x509.pem",
                "a.example.spiffe-trust-bundle.pem",
                "credential-bundle.private-key.x509.pem",
                "credential-bundle.private-key.pem",
            ],
        ] {
            let s = select(names);
            assert_eq!(
                s.credential_bundle.as_deref(),
                Some("credential-bundle.private-key.x509.pem")
            );
            assert_eq!(
                s.trust_bundles,
                BTreeMap::from([(
                    td("a.example"),
                    "a.example.spiffe-trust-bundle.x509.pem".to_string()
                )])
            );
        }
        let old = select([
            "credential-bundle.private-key.pem",
            "b.example.spiffe-trust-bundle.pem",
        ]);
        assert_eq!(
            old.credential_bundle.as_deref(),
            Some("credential-bundle.private-key.pem")
        );
        assert_eq!(
            old.trust_bundles.get(&td("b.example")).map(String::as_str),
            Some("b.example.spiffe-trust-bundle.pem")
        );
    }

    #[test]
    fn ignores_kubelet_entries_and_unrelated_files() {
        let s = select([
            "..data",
            "..data_tmp",
            "..2026_11_30_10_00_00.123456789",
            "README",
            "credential-bundle.pem",
            "ca.crt",
            "a.example.spiffe-trust-bundle.x509.pem.bak",
            "a.example.spiffe-trust-bundle.x509",
        ]);
        assert_eq!(s, Selection::default());
    }

    #[test]
    fn names_with_invalid_trust_domains_are_reported_not_read() {
        let bad = [
            ".spiffe-trust-bundle.x509.pem",
            "..spiffe-trust-bundle.x509.pem",
            "...spiffe-trust-bundle.x509.pem",
            ".hidden.spiffe-trust-bundle.x509.pem",
            "UPPER.example.spiffe-trust-bundle.x509.pem",
            "sp ace.spiffe-trust-bundle.pem",
            "a%2f..spiffe-trust-bundle.pem",
            "spiffe:.spiffe-trust-bundle.pem",
            "caf\u{e9}.example.spiffe-trust-bundle.x509.pem",
        ];
        let s = select(bad);
        assert!(s.trust_bundles.is_empty(), "{:?}", s.trust_bundles);
        // `..`-prefixed names are kubelet's and skipped silently; every
        // other one is reported.
        let reported: Vec<&str> = s.bad_names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            reported,
            [
                ".spiffe-trust-bundle.x509.pem",
                ".hidden.spiffe-trust-bundle.x509.pem",
                "UPPER.example.spiffe-trust-bundle.x509.pem",
                "sp ace.spiffe-trust-bundle.pem",
                "a%2f..spiffe-trust-bundle.pem",
                "spiffe:.spiffe-trust-bundle.pem",
                "caf\u{e9}.example.spiffe-trust-bundle.x509.pem",
            ]
        );
    }

    #[test]
    fn file_name_round_trips() {
        let t = td("b.example");
        assert_eq!(
            classify(&trust_bundle_file_name(&t)),
            Name::TrustBundle(t, Revision::New)
        );
    }
}
