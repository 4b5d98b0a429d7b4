//! The PodIdentity X.509 extension: which pod a certificate was issued to.
//!
//! It comes from Kubernetes' Pod Certificates design work (an early revision of
//! KEP-4317 and its prototype, kubernetes PR 121596, package
//! `k8s.io/component-helpers/kubernetesx509`; it shipped in no Kubernetes release).
//! What is emitted and accepted here is exactly the prototype's encoding:
//!
//! - extension OID `1.3.6.1.4.1.57683.1` ([`POD_IDENTITY_OID`]: the Kubernetes
//!   project's CNCF enterprise number, arc 1), **non-critical** (the prototype sets no
//!   `Critical` flag; a critical extension unknown to a verifier, which is every
//!   verifier but ours, makes rustls/WebPKI, Go's crypto/x509 and OpenSSL refuse the
//!   certificate);
//! - value: the DER of `SEQUENCE { namespace, serviceAccountName, serviceAccountUID,
//!   podName, podUID, nodeName, nodeUID }`, each a `UTF8String` with its universal tag
//!   (Go: a struct of seven `string` fields tagged `asn1:"utf8"`, marshalled by
//!   `encoding/asn1`).
//!
//! Decoding is strict where Go's `encoding/asn1` is lenient: exactly seven
//! `UTF8String`s (Go accepts trailing elements; a later KEP revision with eight,
//! context-tagged fields must not be misread as this one), DER only, nothing after the
//! SEQUENCE, no empty field (every field comes from a required, validated
//! PodCertificateRequest field; an empty one is not an identity). Parsed with the `der`
//! crate; never by hand.

use der::asn1::Utf8StringRef;
use der::{Decode as _, Encode as _, Sequence};

/// The extension's OID, dotted.
pub const POD_IDENTITY_OID: &str = "1.3.6.1.4.1.57683.1";

/// The extension's OID as arcs (for certificate builders such as rcgen).
pub const POD_IDENTITY_OID_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 57683, 1];

/// The identity of the pod a certificate was issued to, as the signer found it in the
/// cluster (every field was checked against the live pod, Node and ServiceAccount
/// before issuance). Only a verified chain's leaf yields one
/// ([`PeerIdentity::pod_identity`](crate::PeerIdentity::pod_identity)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PodIdentity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's ServiceAccount.
    pub service_account_name: String,
    /// The ServiceAccount's UID.
    pub service_account_uid: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The node the pod is bound to.
    pub node_name: String,
    /// The Node's UID.
    pub node_uid: String,
}

/// Why a PodIdentity extension value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PodIdentityError {
    /// The DER is not a SEQUENCE of exactly seven UTF8Strings (wrong tag, wrong
    /// count, bad length, trailing bytes, invalid UTF-8, ...).
    #[error("the PodIdentity extension (OID {POD_IDENTITY_OID}) is not a DER SEQUENCE of seven UTF8Strings: {0}")]
    Malformed(String),
    /// A field is empty.
    #[error("the PodIdentity extension (OID {POD_IDENTITY_OID}) has an empty {0}")]
    EmptyField(&'static str),
    /// The certificate carries the extension more than once.
    #[error(
        "the certificate carries the PodIdentity extension (OID {POD_IDENTITY_OID}) {0} times"
    )]
    Repeated(usize),
    /// The extension is marked critical (the prototype's never is).
    #[error("the PodIdentity extension (OID {POD_IDENTITY_OID}) is marked critical")]
    Critical,
}

/// The wire form: field order and types are the prototype's `podIdentityASN1`.
#[derive(Sequence)]
struct Wire<'a> {
    namespace: Utf8StringRef<'a>,
    service_account_name: Utf8StringRef<'a>,
    service_account_uid: Utf8StringRef<'a>,
    pod_name: Utf8StringRef<'a>,
    pod_uid: Utf8StringRef<'a>,
    node_name: Utf8StringRef<'a>,
    node_uid: Utf8StringRef<'a>,
}

impl PodIdentity {
    fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("namespace", &self.namespace),
            ("serviceAccountName", &self.service_account_name),
            ("serviceAccountUID", &self.service_account_uid),
            ("podName", &self.pod_name),
            ("podUID", &self.pod_uid),
            ("nodeName", &self.node_name),
            ("nodeUID", &self.node_uid),
        ]
    }

    fn check_not_empty(&self) -> Result<(), PodIdentityError> {
        match self.fields().into_iter().find(|(_, v)| v.is_empty()) {
            Some((name, _)) => Err(PodIdentityError::EmptyField(name)),
            None => Ok(()),
        }
    }

    /// The extension value (DER).
    ///
    /// # Errors
    /// [`PodIdentityError::EmptyField`] if a field is empty;
    /// [`PodIdentityError::Malformed`] if a field is too long for DER (4 GiB).
    pub fn to_der(&self) -> Result<Vec<u8>, PodIdentityError> {
        self.check_not_empty()?;
        fn s(v: &str) -> Result<Utf8StringRef<'_>, PodIdentityError> {
            Utf8StringRef::new(v).map_err(malformed)
        }
        let wire = Wire {
            namespace: s(&self.namespace)?,
            service_account_name: s(&self.service_account_name)?,
            service_account_uid: s(&self.service_account_uid)?,
            pod_name: s(&self.pod_name)?,
            pod_uid: s(&self.pod_uid)?,
            node_name: s(&self.node_name)?,
            node_uid: s(&self.node_uid)?,
        };
        wire.to_der().map_err(malformed)
    }

    /// Parses an extension value (DER), strictly (see the module docs).
    ///
    /// # Errors
    /// [`PodIdentityError::Malformed`] or [`PodIdentityError::EmptyField`].
    pub fn from_der(value: &[u8]) -> Result<PodIdentity, PodIdentityError> {
        let wire = Wire::from_der(value).map_err(malformed)?;
        let identity = PodIdentity {
            namespace: wire.namespace.as_str().to_string(),
            service_account_name: wire.service_account_name.as_str().to_string(),
            service_account_uid: wire.service_account_uid.as_str().to_string(),
            pod_name: wire.pod_name.as_str().to_string(),
            pod_uid: wire.pod_uid.as_str().to_string(),
            node_name: wire.node_name.as_str().to_string(),
            node_uid: wire.node_uid.as_str().to_string(),
        };
        identity.check_not_empty()?;
        Ok(identity)
    }

    /// The PodIdentity of **your own** certificate (the leaf of your credentials),
    /// e.g. for "peers in the same namespace as mine"
    /// ([`Authorizer::pod_namespace`](crate::Authorizer::pod_namespace)). A peer's is
    /// [`PeerIdentity::pod_identity`](crate::PeerIdentity::pod_identity), read only
    /// after its chain verified; never call this on a certificate you did not verify.
    ///
    /// # Errors
    /// [`PodIdentityError`] if the certificate does not parse or its extension is
    /// malformed.
    pub fn from_own_certificate(leaf_der: &[u8]) -> Result<Option<PodIdentity>, PodIdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf_der).map_err(|e| {
            PodIdentityError::Malformed(format!("the certificate does not parse: {e}"))
        })?;
        PodIdentity::from_certificate(&cert)
    }

    /// The PodIdentity of a parsed certificate: `Ok(None)` without the extension.
    ///
    /// Call it on a verified leaf only.
    pub(crate) fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Option<PodIdentity>, PodIdentityError> {
        let found: Vec<_> = cert
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string() == POD_IDENTITY_OID)
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [ext] if ext.critical => Err(PodIdentityError::Critical),
            [ext] => PodIdentity::from_der(ext.value).map(Some),
            more => Err(PodIdentityError::Repeated(more.len())),
        }
    }
}

fn malformed(e: der::Error) -> PodIdentityError {
    PodIdentityError::Malformed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PodIdentity {
        PodIdentity {
            namespace: "payments".into(),
            service_account_name: "api".into(),
            service_account_uid: "5f0c3b9e-4c6e-4f43-8a51-1f5a2c9d0e11".into(),
            pod_name: "api-7c9f-x2x4q".into(),
            pod_uid: "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10".into(),
            node_name: "node-1".into(),
            node_uid: "9a1d2e3f-0b4c-4d5e-8f60-7a8b9c0d1e2f".into(),
        }
    }

    /// A DER length (up to 65535 bytes).
    fn len(n: usize) -> Vec<u8> {
        match n {
            0..=127 => vec![n as u8],
            128..=255 => vec![0x81, n as u8],
            _ => vec![0x82, (n >> 8) as u8, n as u8],
        }
    }

    /// DER by the book, for attacks: a SEQUENCE of TLVs.
    fn seq(items: &[(u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (tag, value) in items {
            body.push(*tag);
            body.extend(len(value.len()));
            body.extend_from_slice(value);
        }
        let mut out = vec![0x30];
        out.extend(len(body.len()));
        out.extend(body);
        out
    }

    const UTF8: u8 = 0x0c;

    #[test]
    fn round_trips_every_field_in_the_prototypes_order() {
        let id = sample();
        let der = id.to_der().unwrap();
        assert_eq!(PodIdentity::from_der(&der).unwrap(), id);
        // The exact bytes: SEQUENCE of seven universal UTF8Strings, in order.
        let expected = seq(&[
            (UTF8, b"payments"),
            (UTF8, b"api"),
            (UTF8, id.service_account_uid.as_bytes()),
            (UTF8, b"api-7c9f-x2x4q"),
            (UTF8, id.pod_uid.as_bytes()),
            (UTF8, b"node-1"),
            (UTF8, id.node_uid.as_bytes()),
        ]);
        assert_eq!(der, expected);
    }

    #[test]
    fn round_trips_non_ascii_and_long_fields() {
        let mut id = sample();
        id.namespace = "ünïcödé-名前".into();
        id.pod_name = "p".repeat(300); // a long-form length inside
        let der = id.to_der().unwrap();
        assert_eq!(PodIdentity::from_der(&der).unwrap(), id);
    }

    #[test]
    fn refuses_to_encode_an_empty_field() {
        let mut id = sample();
        id.node_uid.clear();
        assert_eq!(id.to_der(), Err(PodIdentityError::EmptyField("nodeUID")));
    }

    #[test]
    fn rejects_an_empty_field() {
        let der = seq(&[
            (UTF8, b"ns"),
            (UTF8, b""),
            (UTF8, b"u"),
            (UTF8, b"p"),
            (UTF8, b"u"),
            (UTF8, b"n"),
            (UTF8, b"u"),
        ]);
        assert_eq!(
            PodIdentity::from_der(&der),
            Err(PodIdentityError::EmptyField("serviceAccountName"))
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let der = seq(&[
            (UTF8, b"ns"),
            (UTF8, b"sa"),
            (UTF8, b"u"),
            (UTF8, &[0xff, 0xfe]),
            (UTF8, b"u"),
            (UTF8, b"n"),
            (UTF8, b"u"),
        ]);
        assert!(matches!(
            PodIdentity::from_der(&der),
            Err(PodIdentityError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_eight_fields_six_fields_and_the_five_field_prototype() {
        let f: &[u8] = b"x";
        for n in [0, 1, 5, 6, 8] {
            let items: Vec<(u8, &[u8])> = (0..n).map(|_| (UTF8, f)).collect();
            let err = PodIdentity::from_der(&seq(&items)).unwrap_err();
            assert!(
                matches!(err, PodIdentityError::Malformed(_)),
                "{n} fields: {err}"
            );
        }
        // Seven is right.
        let items: Vec<(u8, &[u8])> = (0..7).map(|_| (UTF8, f)).collect();
        assert!(PodIdentity::from_der(&seq(&items)).is_ok());
    }

    #[test]
    fn rejects_wrong_tags() {
        let f: &[u8] = b"x";
        // PrintableString, IA5String, and the later KEP's context tag [0].
        for wrong in [0x13u8, 0x16, 0x80] {
            let mut items: Vec<(u8, &[u8])> = (0..7).map(|_| (UTF8, f)).collect();
            items[0].0 = wrong;
            let err = PodIdentity::from_der(&seq(&items)).unwrap_err();
            assert!(
                matches!(err, PodIdentityError::Malformed(_)),
                "{wrong:#x}: {err}"
            );
        }
        // A SET instead of a SEQUENCE.
        let mut der = PodIdentity::to_der(&sample()).unwrap();
        der[0] = 0x31;
        assert!(PodIdentity::from_der(&der).is_err());
    }

    #[test]
    fn rejects_trailing_bytes_truncation_and_non_der_lengths() {
        let der = sample().to_der().unwrap();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(PodIdentity::from_der(&trailing).is_err());
        for cut in [0, 1, 2, der.len() / 2, der.len() - 1] {
            assert!(PodIdentity::from_der(&der[..cut]).is_err(), "cut at {cut}");
        }
        // A length in more bytes than needed: BER, not DER.
        assert_eq!(der[1], 0x81, "the sample's body is 128..=255 bytes");
        let body = &der[3..];
        let mut long = vec![0x30, 0x82, 0x00, body.len() as u8];
        long.extend_from_slice(body);
        assert!(PodIdentity::from_der(&long).is_err());
    }
}
