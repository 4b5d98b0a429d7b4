//! A small certificate factory for tests (rcgen on aws-lc-rs): CAs,
//! intermediates, and leaves with any combination of the properties podtls
//! validates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;

pub use crate::key_type::KeyType;

impl KeyType {
    /// Generates a key pair of this type.
    ///
    /// # Panics
    /// If key generation fails (test helper).
    pub fn generate(self) -> KeyPair {
        let r = match self {
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::EcdsaP521 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        };
        r.expect("key generation")
    }
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Key type of the leaf.
    pub key_type: KeyType,
    /// URI SANs (a SPIFFE leaf has exactly one).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Validity start.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
    /// Make it a CA certificate (invalid as a leaf).
    pub is_ca: bool,
    /// Key usages; default digitalSignature (+ keyEncipherment for RSA).
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    /// Extended key usages; default serverAuth + clientAuth.
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    /// Further extensions: OID arcs, DER value, critical.
    pub extensions: Vec<(Vec<u64>, Vec<u8>, bool)>,
}

impl LeafSpec {
    /// A SPIFFE leaf for `id`, valid from a minute ago for an hour, P-256.
    pub fn spiffe(id: &str) -> Self {
        LeafSpec {
            uris: vec![id.to_string()],
            ..Self::base()
        }
    }

    /// A DNS leaf for `names`, valid from a minute ago for an hour, P-256.
    pub fn dns(names: &[&str]) -> Self {
        LeafSpec {
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            ..Self::base()
        }
    }

    fn base() -> Self {
        let now = SystemTime::now();
        LeafSpec {
            key_type: KeyType::EcdsaP256,
            uris: Vec::new(),
            dns_names: Vec::new(),
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
            is_ca: false,
            key_usages: None,
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            extensions: Vec::new(),
        }
    }

    /// Adds an extension (OID arcs, DER value, critical), e.g. a PodIdentity
    /// ([`crate::certificate::POD_IDENTITY_OID_ARCS`]).
    pub fn extension(mut self, oid: &[u64], value: Vec<u8>, critical: bool) -> Self {
        self.extensions.push((oid.to_vec(), value, critical));
        self
    }

    /// Sets the key type.
    pub fn key(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Sets the validity window.
    pub fn validity(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Adds a URI SAN.
    pub fn uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_string());
        self
    }

    /// Adds a DNS SAN.
    pub fn dns_name(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_string());
        self
    }
}

/// A leaf issued by a [`CertAuthority`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// Leaf then intermediates, PEM.
    pub chain_pem: String,
    /// Leaf, DER.
    pub leaf_der: CertificateDer<'static>,
    /// Leaf + intermediates, DER.
    pub chain_der: Vec<CertificateDer<'static>>,
    /// PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
    /// Serial number as podtls reports it (lowercase hex).
    pub serial: String,
}

impl Issued {
    /// A kubelet credential bundle: the key, then the chain.
    pub fn bundle_pem(&self) -> String {
        format!("{}{}", self.key_pem, self.chain_pem)
    }
}

/// The shape of a CA certificate (validity, path length, key).
#[derive(Debug, Clone)]
pub struct CaSpec {
    /// Key type of the CA.
    pub key_type: KeyType,
    /// Start of validity (default: an hour ago).
    pub not_before: SystemTime,
    /// End of validity (default: in ten days).
    pub not_after: SystemTime,
    /// `pathLenConstraint` (default: none).
    pub path_len: Option<u8>,
}

impl Default for CaSpec {
    fn default() -> Self {
        let now = SystemTime::now();
        CaSpec {
            key_type: KeyType::EcdsaP256,
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(10 * 24 * 3600),
            path_len: None,
        }
    }
}

impl CaSpec {
    /// Sets the validity window.
    pub fn validity(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Sets the `pathLenConstraint`.
    pub fn path_len(mut self, max_intermediates: u8) -> Self {
        self.path_len = Some(max_intermediates);
        self
    }
}

/// A certificate authority (root or intermediate).
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    /// Intermediates between this CA and its root, this CA first (empty for a root).
    chain: Vec<(CertificateDer<'static>, String)>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish()
    }
}

impl CertAuthority {
    /// A self-signed P-256 root named `name`.
    pub fn new(name: &str) -> Self {
        Self::with_key(name, KeyType::EcdsaP256)
    }

    /// A self-signed root with the given key type.
    ///
    /// # Panics
    /// If generation fails (test helper).
    pub fn with_key(name: &str, key_type: KeyType) -> Self {
        Self::root(
            name,
            &CaSpec {
                key_type,
                ..CaSpec::default()
            },
        )
    }

    /// A self-signed root of the given shape.
    ///
    /// # Panics
    /// If generation fails (test helper).
    pub fn root(name: &str, spec: &CaSpec) -> Self {
        let params = ca_params(name, spec);
        let key = spec.key_type.generate();
        let cert = params.self_signed(&key).expect("self-sign CA");
        CertAuthority {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            chain: Vec::new(),
        }
    }

    /// An intermediate CA signed by this one.
    ///
    /// # Panics
    /// If signing fails (test helper).
    pub fn intermediate(&self, name: &str) -> CertAuthority {
        self.intermediate_with(name, &CaSpec::default())
    }

    /// An intermediate CA of the given shape, signed by this one.
    ///
    /// # Panics
    /// If signing fails (test helper).
    pub fn intermediate_with(&self, name: &str, spec: &CaSpec) -> CertAuthority {
        let params = ca_params(name, spec);
        let key = spec.key_type.generate();
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign intermediate");
        let mut chain = vec![(cert.der().clone(), cert.pem())];
        chain.extend(self.chain.iter().cloned());
        CertAuthority {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            chain,
        }
    }

    /// This CA's certificate, PEM (for a trust bundle, use the root's).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This CA's certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Issues a leaf.
    ///
    /// # Panics
    /// If signing fails (test helper).
    pub fn issue(&self, spec: &LeafSpec) -> Issued {
        let key = spec.key_type.generate();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = to_offset(spec.not_before);
        params.not_after = to_offset(spec.not_after);
        params.serial_number = Some(next_serial());
        for uri in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into().expect("ia5 uri")));
        }
        for dns in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into().expect("ia5 dns")));
        }
        if spec.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params.key_usages = spec.key_usages.clone().unwrap_or_else(|| {
            let mut ku = vec![KeyUsagePurpose::DigitalSignature];
            if matches!(spec.key_type, KeyType::Rsa3072 | KeyType::Rsa4096) {
                ku.push(KeyUsagePurpose::KeyEncipherment);
            }
            ku
        });
        params.extended_key_usages = spec.ekus.clone();
        params.use_authority_key_identifier_extension = true;
        for (oid, value, critical) in &spec.extensions {
            let mut ext = rcgen::CustomExtension::from_oid_content(oid, value.clone());
            ext.set_criticality(*critical);
            params.custom_extensions.push(ext);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let serial = crate::certificate::CertInfo::from_der(cert.der())
            .expect("parse issued leaf")
            .serial;
        let mut chain_pem = cert.pem();
        let mut chain_der = vec![cert.der().clone()];
        for (der, pem) in &self.chain {
            chain_pem.push_str(pem);
            chain_der.push(der.clone());
        }
        Issued {
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            chain_pem,
            leaf_der: cert.der().clone(),
            chain_der,
            serial,
        }
    }
}

fn ca_params(name: &str, spec: &CaSpec) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match spec.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_offset(spec.not_before);
    params.not_after = to_offset(spec.not_after);
    params.serial_number = Some(next_serial());
    params
}

fn next_serial() -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&nanos.to_be_bytes());
    bytes.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    time::OffsetDateTime::from_unix_timestamp(secs).expect("time in range")
}
