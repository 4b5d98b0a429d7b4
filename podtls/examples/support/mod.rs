//! The examples' stand-in for kubelet (not glue: in a pod, kubelet does
//! this): a CA, a server pod's and a client pod's projected volumes written
//! with kubelet's atomic-writer layout, and a task that reissues both
//! certificates periodically.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use podtls::test_util::{AtomicWriter, CertAuthority, LeafSpec};
use podtls::{parse_trust_domain, PodTls, TrustDomain};

pub const SERVER_ID: &str = "spiffe://cluster.local/ns/demo/sa/server";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/demo/sa/client";

pub fn td() -> TrustDomain {
    parse_trust_domain("cluster.local").expect("trust domain")
}

struct Volume {
    creds: AtomicWriter,
    trust: AtomicWriter,
    id: &'static str,
}

impl Volume {
    fn new(root: &Path, name: &str, id: &'static str) -> Volume {
        Volume {
            creds: AtomicWriter::new(root.join(name).join("creds")).expect("volume dir"),
            trust: AtomicWriter::new(root.join(name).join("trust")).expect("volume dir"),
            id,
        }
    }

    fn issue(&self, ca: &CertAuthority) {
        let now = SystemTime::now();
        let leaf = ca.issue(
            &LeafSpec::spiffe(self.id)
                .validity(now - Duration::from_secs(60), now + Duration::from_secs(60)),
        );
        let files = BTreeMap::from([(
            "credentialbundle.pem".to_string(),
            leaf.bundle_pem().into_bytes(),
        )]);
        self.creds.write(&files).expect("write credentials");
    }

    fn pod(&self, ca: &CertAuthority) -> PodTls {
        let files = BTreeMap::from([("spiffe.pem".to_string(), ca.cert_pem().as_bytes().to_vec())]);
        self.trust.write(&files).expect("write trust bundle");
        self.issue(ca);
        PodTls::builder()
            .credential_bundle(self.creds.path("credentialbundle.pem"))
            .require_spiffe_svid()
            .spiffe_bundle(td(), self.trust.path("spiffe.pem"))
            .start()
            .expect("start podtls")
    }
}

/// Two pods and their kubelet.
pub struct Kubelet {
    _dir: tempfile::TempDir,
    ca: Arc<CertAuthority>,
    server: Arc<Volume>,
    client: Arc<Volume>,
}

impl Kubelet {
    pub fn new() -> Kubelet {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Volume::new(dir.path(), "server", SERVER_ID);
        let client = Volume::new(dir.path(), "client", CLIENT_ID);
        Kubelet {
            _dir: dir,
            ca: Arc::new(CertAuthority::new("demo CA")),
            server: Arc::new(server),
            client: Arc::new(client),
        }
    }

    /// The server pod's and the client pod's podtls, loaded.
    pub async fn pods(&self) -> (PodTls, PodTls) {
        let server = self.server.pod(&self.ca);
        let client = self.client.pod(&self.ca);
        for pod in [&server, &client] {
            pod.ready(Duration::from_secs(10))
                .await
                .expect("credentials load");
        }
        (server, client)
    }

    /// Reissues both certificates every `period`, like kubelet does before
    /// they expire (much more often here).
    pub fn rotate_every(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let (ca, server, client) = (self.ca.clone(), self.server.clone(), self.client.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                server.issue(&ca);
                client.issue(&ca);
            }
        })
    }
}

/// The seconds to run, from the first argument (default 3).
pub fn seconds() -> Duration {
    Duration::from_secs(
        std::env::args()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    )
}

/// Prints the tally; exits non-zero if any request failed or no rotation
/// was seen.
pub fn report(what: &str, ok: u64, failed: u64, serials_seen: usize) {
    println!(
        "{what}: {ok} ok, {failed} failed, {serials_seen} client certificates seen by the server"
    );
    if failed > 0 || ok == 0 || serials_seen < 2 {
        std::process::exit(1);
    }
}
