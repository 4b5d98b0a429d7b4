//! The controller's flags for the pod injection webhook.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgAction, Args};
use signer::controller::{InjectionServerConfig, InjectionSetup};
use signer::{parse_trust_domain, SPIFFE_SIGNER_NAME};

/// `--enable-injection-webhook` and its settings.
#[derive(Args, Debug)]
pub struct InjectionArgs {
    /// Serve the mutating admission webhook that gives opted-in pods a SPIFFE credential
    /// folder (label podtls.row-major.net/inject=enabled on the namespace or the pod).
    /// Needs --enable-service-dns-signer: its CA signs the webhook's certificate.
    #[arg(long, env = "SIGNER_ENABLE_INJECTION_WEBHOOK", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub enable_injection_webhook: bool,
    /// HTTPS address of the webhook.
    #[arg(
        long,
        env = "SIGNER_INJECTION_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:9443"
    )]
    pub injection_webhook_listen: SocketAddr,
    /// Name of the webhook's serving certificate; repeatable. Default: the Service
    /// `podtls-injection.<the controller's namespace>.svc`.
    #[arg(long, env = "SIGNER_INJECTION_WEBHOOK_DNS_NAME", value_delimiter = ',')]
    pub injection_webhook_dns_name: Vec<String>,
    /// Directory for the webhook's serving credential (mount an in-memory emptyDir).
    #[arg(
        long,
        env = "SIGNER_INJECTION_WEBHOOK_CREDENTIAL_DIR",
        default_value = "/run/podtls-injection"
    )]
    pub injection_webhook_credential_dir: PathBuf,
    /// The MutatingWebhookConfiguration whose caBundle the controller keeps equal to
    /// the service-dns trust bundle; "off" leaves it alone.
    #[arg(
        long,
        env = "SIGNER_INJECTION_WEBHOOK_CONFIGURATION",
        default_value = "podtls-injection"
    )]
    pub injection_webhook_configuration: String,
    /// Lifetime of the webhook's serving certificate (renewed at two thirds).
    #[arg(long, env = "SIGNER_INJECTION_WEBHOOK_CERTIFICATE_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub injection_webhook_certificate_lifetime: Duration,
    /// Image of the in-pod agent injected on clusters without Pod Certificates (with
    /// --enable-csr-signing); it must hold the podtls-agent binary.
    #[arg(
        long,
        env = "SIGNER_INJECTION_AGENT_IMAGE",
        default_value = "localhost/podtls:dev"
    )]
    pub injection_agent_image: String,
}

impl InjectionArgs {
    /// The setup, or `None` when the webhook is off. `namespace` is the controller's
    /// (`--sharding-pod-namespace`), `spiffe` the spiffe signer's name and trust domain.
    ///
    /// # Errors
    /// A message naming the flag that is missing or wrong.
    pub fn setup(
        &self,
        namespace: &str,
        service_dns_enabled: bool,
        spiffe: Option<(&str, &str)>,
        mapping: Option<&signer::TrustDomainMap>,
    ) -> anyhow::Result<Option<InjectionSetup>> {
        if !self.enable_injection_webhook {
            return Ok(None);
        }
        if !service_dns_enabled {
            bail!("--enable-injection-webhook needs --enable-service-dns-signer: its CA signs the webhook's serving certificate");
        }
        let Some((signer_name, trust_domain)) = spiffe else {
            bail!("--enable-injection-webhook needs --enable-spiffe-signer: injected pods get SPIFFE credentials");
        };
        let trust_domains = match mapping {
            Some(map) => map.clone(),
            None => signer::TrustDomainMap::single(parse_trust_domain(trust_domain)?),
        };
        let dns_names = if self.injection_webhook_dns_name.is_empty() {
            if namespace.is_empty() {
                bail!("--enable-injection-webhook: give --injection-webhook-dns-name, or --sharding-pod-namespace for the default podtls-injection.<namespace>.svc");
            }
            vec![format!("podtls-injection.{namespace}.svc")]
        } else {
            self.injection_webhook_dns_name.clone()
        };
        let mut signers = vec![signer_name.to_string()];
        if signer_name != SPIFFE_SIGNER_NAME {
            signers.push(SPIFFE_SIGNER_NAME.to_string());
        }
        Ok(Some(InjectionSetup {
            server: InjectionServerConfig {
                listen: self.injection_webhook_listen,
                dns_names,
                credential_dir: self.injection_webhook_credential_dir.clone(),
                webhook_configuration: match self.injection_webhook_configuration.as_str() {
                    "off" | "" => None,
                    name => Some(name.to_string()),
                },
                certificate_lifetime: self
                    .injection_webhook_certificate_lifetime
                    .max(Duration::from_secs(3600)),
            },
            own_namespace: namespace.to_string(),
            signers,
            trust_domains,
            agent_image: self.injection_agent_image.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        injection: InjectionArgs,
    }

    fn args(flags: &[&str]) -> InjectionArgs {
        let mut argv = vec!["signer"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().injection
    }

    #[test]
    fn off_unless_enabled_and_then_needs_both_signers() {
        let spiffe = Some((SPIFFE_SIGNER_NAME, "cluster.local"));
        assert!(args(&[])
            .setup("mesh-controller", true, spiffe, None)
            .unwrap()
            .is_none());
        let on = args(&["--enable-injection-webhook"]);
        let err = on
            .setup("mesh-controller", false, spiffe, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--enable-service-dns-signer"), "{err}");
        let err = on
            .setup("mesh-controller", true, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--enable-spiffe-signer"), "{err}");
        let err = on.setup("", true, spiffe, None).unwrap_err().to_string();
        assert!(err.contains("--injection-webhook-dns-name"), "{err}");
    }

    #[test]
    fn each_namespace_gets_its_trust_domain_from_the_spiffe_signers_mapping() {
        let map = signer::TrustDomainMap::new(
            parse_trust_domain("cluster.local").unwrap(),
            ["payments=pay.example".parse().unwrap()],
        )
        .unwrap();
        let setup = args(&[
            "--enable-injection-webhook",
            "--injection-webhook-dns-name=x",
        ])
        .setup(
            "mesh-controller",
            true,
            Some((SPIFFE_SIGNER_NAME, "cluster.local")),
            Some(&map),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            setup.trust_domains.for_namespace("payments").as_str(),
            "pay.example"
        );
        assert_eq!(
            setup.trust_domains.for_namespace("shop").as_str(),
            "cluster.local"
        );
    }

    #[test]
    fn defaults_name_the_service_in_the_controllers_namespace() {
        let setup = args(&["--enable-injection-webhook=true"])
            .setup(
                "mesh-controller",
                true,
                Some((SPIFFE_SIGNER_NAME, "cluster.local")),
                None,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            setup.server.dns_names,
            ["podtls-injection.mesh-controller.svc"]
        );
        assert_eq!(
            setup.server.webhook_configuration.as_deref(),
            Some("podtls-injection")
        );
        assert_eq!(setup.signers, [SPIFFE_SIGNER_NAME]);
        assert_eq!(setup.own_namespace, "mesh-controller");
        let setup = args(&[
            "--enable-injection-webhook",
            "--injection-webhook-dns-name=localhost",
            "--injection-webhook-configuration=off",
            "--injection-webhook-certificate-lifetime=1m",
        ])
        .setup(
            "mesh-controller",
            true,
            Some((SPIFFE_SIGNER_NAME, "cluster.local")),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(setup.server.dns_names, ["localhost"]);
        assert!(setup.server.webhook_configuration.is_none());
        assert_eq!(
            setup.server.certificate_lifetime,
            Duration::from_secs(3600),
            "at least 1 h"
        );
    }
}
