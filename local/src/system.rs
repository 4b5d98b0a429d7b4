//! The local system: two signers with their CA pools, three example
//! namespaces with a server and a client pod each, and the rotation schedule.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use signer::{
    generate_ca, CaPool, CertificateSource, KeyType, PodInfo, ServiceInfo, ServiceType,
    SignerConfig,
};

use crate::kubelet::Pod;

/// The SPIFFE trust domain of the local system.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The second trust domain: a partner's cluster with its own spiffe signer
/// and CA pool, which `cluster.local` federates with during the run.
pub const PARTNER_TRUST_DOMAIN: &str = "partner.example";

/// The partner cluster's spiffe signer.
pub const PARTNER_SIGNER: &str = "partner.example/spiffe";

/// One signer: its configuration and CA pool.
pub struct LocalSigner {
    /// The issuance configuration (the controller's, unchanged).
    pub config: SignerConfig,
    /// The CA pool (the same JSON format the controller's Secret holds).
    pub pool: CaPool,
}

impl LocalSigner {
    fn new(config: SignerConfig, now: SystemTime) -> Result<Self> {
        let ca = generate_ca(
            "1",
            KeyType::EcdsaP256,
            now,
            Duration::from_secs(30 * 24 * 3600),
        )
        .context("generating CA 1")?;
        Ok(LocalSigner {
            config,
            pool: CaPool::single(ca),
        })
    }

    /// Adds CA "2" to the pool (trust bundles now carry both; CA 1 still signs).
    pub fn add_second_ca(&mut self, now: SystemTime) -> Result<()> {
        let ca = generate_ca(
            "2",
            KeyType::EcdsaP256,
            now,
            Duration::from_secs(30 * 24 * 3600),
        )
        .context("generating CA 2")?;
        self.pool.add_ca(ca, now).context("adding CA 2")?;
        Ok(())
    }

    /// Makes CA "2" the signing CA.
    pub fn sign_with_second_ca(&mut self, now: SystemTime) -> Result<()> {
        self.pool.promote("2", now).context("switching to CA 2")?;
        Ok(())
    }

    /// Removes CA "1" from the pool (its certificate leaves the trust bundles) with
    /// `signer ca retire`'s rule. CA 1 stopped signing a few seconds ago, so its leaves
    /// may still be valid for up to the signer's maximum lifetime and the rule refuses;
    /// here every pod's CA 1 certificate is known to be replaced (the kubelet stand-in
    /// reissues all of them on every rotation), so the retirement is forced, as an
    /// operator would force it after checking. Only that refusal is overridden.
    pub fn retire_first_ca(&mut self, now: SystemTime) -> Result<()> {
        self.pool
            .retire("1", now, self.config.max_lifetime, true)
            .context("retiring CA 1")?;
        Ok(())
    }
}

/// How a pair's client verifies and authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// service-dns server certificate, client without a certificate.
    ServiceDnsUnauthClient,
    /// service-dns server certificate, SPIFFE client certificate (echoed).
    ServiceDnsSpiffeClient,
    /// Both sides SPIFFE; the client checks the server's SPIFFE ID.
    FullSpiffe,
    /// Full SPIFFE across trust domains: the server in `cluster.local`, the
    /// client in `partner.example`, both reading a SPIFFE credential folder.
    /// Refused until federation is added, and again after it is removed.
    Federated,
}

/// One example namespace.
#[derive(Debug, Clone)]
pub struct Pair {
    /// What kind of pair.
    pub kind: PairKind,
    /// The namespace (as in example-manifests/).
    pub namespace: &'static str,
    /// The server pod.
    pub server: Pod,
    /// The client pod.
    pub client: Pod,
    /// The Service selecting the server pod.
    pub service: ServiceInfo,
}

impl Pair {
    /// A short label for the display.
    pub fn label(&self) -> &'static str {
        match self.kind {
            PairKind::ServiceDnsUnauthClient => "service-dns + unauthenticated client",
            PairKind::ServiceDnsSpiffeClient => "service-dns + SPIFFE client",
            PairKind::FullSpiffe => "full SPIFFE (both sides)",
            PairKind::Federated => "federated (client in partner.example)",
        }
    }

    /// Whether the pods read a SPIFFE credential folder.
    pub fn uses_credential_folder(&self) -> bool {
        self.kind == PairKind::Federated
    }

    /// The server's in-cluster DNS name.
    pub fn server_host(&self) -> String {
        format!("{}.{}.svc", self.service.name, self.namespace)
    }

    /// The server's SPIFFE ID (full SPIFFE pair).
    pub fn server_spiffe_id(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}",
            self.namespace, self.server.service_account
        )
    }
}

fn pod(namespace: &str, name: &str, sa: &str, signer: Option<&str>) -> Pod {
    Pod {
        info: PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("{namespace}-{name}-0000-0000-000000000000"),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            service_account_name: sa.into(),
            node_name: Some(crate::kubelet::NODE_NAME.into()),
            terminating: false,
            mirror: false,
            certificate_sources: signer
                .map(|s| CertificateSource {
                    signer_name: s.into(),
                    key_type: KeyType::EcdsaP256.as_str().into(),
                })
                .into_iter()
                .collect(),
        },
        service_account: sa.into(),
        signer: signer.map(str::to_string),
    }
}

/// The whole system.
pub struct System {
    /// `row-major.net/service-dns`.
    pub service_dns: LocalSigner,
    /// `row-major.net/spiffe`.
    pub spiffe: LocalSigner,
    /// `partner.example/spiffe`: the second trust domain's signer.
    pub partner: LocalSigner,
    /// The pairs.
    pub pairs: Vec<Pair>,
}

impl System {
    /// Fresh CAs and the three example namespaces.
    pub fn new(now: SystemTime) -> Result<System> {
        let td = signer::parse_trust_domain(TRUST_DOMAIN)?;
        let service_dns = LocalSigner::new(SignerConfig::service_dns(), now)?;
        let spiffe = LocalSigner::new(SignerConfig::spiffe(td), now)?;
        let partner = LocalSigner::new(
            SignerConfig::spiffe(signer::parse_trust_domain(PARTNER_TRUST_DOMAIN)?)
                .with_name(PARTNER_SIGNER),
            now,
        )?;
        let dns = service_dns.config.name.clone();
        let sp = spiffe.config.name.clone();
        let partner_name = partner.config.name.clone();
        let pair = |kind,
                    namespace: &'static str,
                    server_signer: &str,
                    client_signer: Option<&str>| Pair {
            kind,
            namespace,
            server: pod(namespace, "server", "server", Some(server_signer)),
            client: pod(namespace, "client", "client", client_signer),
            service: ServiceInfo {
                namespace: namespace.into(),
                name: "server".into(),
                service_type: ServiceType::ClusterIp,
                selector: BTreeMap::from([("app".to_string(), "server".to_string())]),
            },
        };
        Ok(System {
            pairs: vec![
                pair(
                    PairKind::ServiceDnsUnauthClient,
                    "service-dns-unauth-client",
                    &dns,
                    None,
                ),
                pair(
                    PairKind::ServiceDnsSpiffeClient,
                    "service-dns-spiffe-client",
                    &dns,
                    Some(&sp),
                ),
                pair(PairKind::FullSpiffe, "spiffe-mtls", &sp, Some(&sp)),
                pair(PairKind::Federated, "federation", &sp, Some(&partner_name)),
            ],
            service_dns,
            spiffe,
            partner,
        })
    }

    /// The signer named `name`.
    pub fn signer(&self, name: &str) -> Option<&LocalSigner> {
        [&self.service_dns, &self.spiffe, &self.partner]
            .into_iter()
            .find(|s| s.config.name == name)
    }

    /// Every signer, mutably.
    pub fn signers_mut(&mut self) -> [&mut LocalSigner; 3] {
        [&mut self.service_dns, &mut self.spiffe, &mut self.partner]
    }
}
