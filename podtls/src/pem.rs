//! Splitting PEM text into private keys and certificates.

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Origin};

/// The blocks found in one PEM text, in file order.
pub(crate) struct PemBlocks {
    pub keys: Vec<PrivateKeyDer<'static>>,
    pub certs: Vec<CertificateDer<'static>>,
}

/// Parses every block in `pem`; unknown block types are ignored, malformed
/// PEM is an error naming `origin`.
pub(crate) fn parse_blocks(pem: &[u8], origin: &Origin) -> Result<PemBlocks, Error> {
    let mut out = PemBlocks {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| Error::Pem {
            origin: origin.clone(),
            source: e,
        })?;
        match kind {
            SectionKind::Certificate => out.certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => out.keys.push(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::EcPrivateKey => out.keys.push(PrivateKeyDer::Sec1(der.into())),
            SectionKind::RsaPrivateKey => out.keys.push(PrivateKeyDer::Pkcs1(der.into())),
            _ => {}
        }
    }
    // Text that is not PEM at all (or a file truncated before its first block
    // ended) yields no blocks; callers report what they expected to find.
    Ok(out)
}

/// Certificates from `pem`, requiring at least one.
pub(crate) fn parse_certs(
    pem: &[u8],
    origin: &Origin,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let blocks = parse_blocks(pem, origin)?;
    if blocks.certs.is_empty() {
        return Err(Error::MissingCertificate {
            origin: origin.clone(),
        });
    }
    Ok(blocks.certs)
}

/// Exactly one private key from `blocks`.
pub(crate) fn single_key(
    keys: Vec<PrivateKeyDer<'static>>,
    origin: &Origin,
) -> Result<PrivateKeyDer<'static>, Error> {
    let mut keys = keys.into_iter();
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        (None, _) => Err(Error::MissingPrivateKey {
            origin: origin.clone(),
        }),
        (Some(_), Some(_)) => Err(Error::MultiplePrivateKeys {
            origin: origin.clone(),
        }),
    }
}
