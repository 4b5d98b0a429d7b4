//! Turns flags into a checked configuration (pure: no files are read here).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use podtls::{
    parse_trust_domain, reload::ReloadTiming, Authorizer, ClientCertMode, PodTlsBuilder,
    TrustDomain,
};

use crate::args::Args;

/// Where the server's own credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// One credential bundle file.
    Bundle(PathBuf),
    /// Separate key and chain files.
    KeyAndChain(PathBuf, PathBuf),
    /// A SPIFFE credential folder (credentials and every trust domain's bundle).
    Folder(PathBuf),
}

/// SPIFFE client authentication settings.
#[derive(Debug, Clone)]
pub struct SpiffeClients {
    /// Optional (401 with a reason) or required (handshake fails).
    pub mode: ClientCertMode,
    /// One bundle file per trust domain.
    pub bundles: Vec<(TrustDomain, PathBuf)>,
    /// Who is allowed.
    pub authorizer: Authorizer,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server credentials.
    pub credentials: Credentials,
    /// SPIFFE client auth, if enabled.
    pub spiffe: Option<SpiffeClients>,
}

impl Config {
    /// Checks flag combinations.
    ///
    /// # Errors
    /// A message naming the flags that do not fit together, or the value
    /// that is invalid.
    pub fn from_args(args: &Args) -> Result<Config> {
        let credentials = match (
            &args.credential_folder,
            &args.server_creds,
            &args.server_key,
            &args.server_chain,
        ) {
            (Some(f), None, None, None) => Credentials::Folder(f.clone()),
            (None, Some(b), None, None) => Credentials::Bundle(b.clone()),
            (None, None, Some(k), Some(c)) => Credentials::KeyAndChain(k.clone(), c.clone()),
            _ => bail!("server credentials are required: give --credential-folder <dir> (or SPIFFE_CREDENTIAL_FOLDER), --server-creds <bundle>, or --server-key and --server-chain"),
        };
        let folder = matches!(credentials, Credentials::Folder(_));
        let enabled = args.enable_spiffe_client_support || args.require_spiffe_client;
        let mut bundles = Vec::new();
        if let Some(path) = &args.spiffe_trust_bundle {
            let td = parse_trust_domain(&args.spiffe_trust_domain)
                .with_context(|| format!("--spiffe-trust-domain {:?}", args.spiffe_trust_domain))?;
            bundles.push((td, path.clone()));
        }
        for spec in &args.spiffe_bundles {
            let (td, path) = spec.split_once('=').with_context(|| {
                format!("--spiffe-bundle {spec:?}: expected <trust-domain>=<file>")
            })?;
            let td = parse_trust_domain(td).with_context(|| format!("--spiffe-bundle {spec:?}"))?;
            if bundles.iter().any(|(t, _)| t == &td) {
                bail!("trust domain {td} is given twice (--spiffe-trust-bundle / --spiffe-bundle)");
            }
            bundles.push((td, PathBuf::from(path)));
        }
        let has_policy = !(args.allow_spiffe_id.is_empty()
            && args.allow_trust_domain.is_empty()
            && args.allow_spiffe_path_prefix.is_empty()
            && args.allow_pod_namespace.is_empty()
            && args.require_issuing_cluster.is_none());
        if !enabled {
            if has_policy {
                bail!("--allow-spiffe-id / --allow-trust-domain / --allow-spiffe-path-prefix / --allow-pod-namespace / --require-issuing-cluster need --enable-spiffe-client-support or --require-spiffe-client");
            }
            return Ok(Config {
                credentials,
                spiffe: None,
            });
        }
        if bundles.is_empty() && !folder {
            bail!("SPIFFE client support needs a trust bundle: give --spiffe-trust-bundle <file> (and --spiffe-trust-domain) or --spiffe-bundle <td>=<file>");
        }
        let authorizer = authorizer(args)?;
        Ok(Config {
            credentials,
            spiffe: Some(SpiffeClients {
                mode: if args.require_spiffe_client {
                    ClientCertMode::Required
                } else {
                    ClientCertMode::Optional
                },
                bundles,
                authorizer,
            }),
        })
    }

    /// A podtls builder loading everything this configuration names.
    pub fn pod_tls(&self, reload_interval: std::time::Duration) -> PodTlsBuilder {
        let mut b = podtls::PodTls::builder().timing(ReloadTiming {
            poll_interval: reload_interval,
            ..ReloadTiming::default()
        });
        b = match &self.credentials {
            Credentials::Bundle(p) => b.credential_bundle(p),
            Credentials::KeyAndChain(k, c) => b.key_and_chain(k, c),
            Credentials::Folder(f) => b.credential_folder(f),
        };
        if let Some(s) = &self.spiffe {
            for (td, path) in &s.bundles {
                b = b.spiffe_bundle(td.clone(), path);
            }
        }
        b
    }
}

fn authorizer(args: &Args) -> Result<Authorizer> {
    let mut rules = Vec::new();
    for id in &args.allow_spiffe_id {
        rules.push(Authorizer::exact(
            podtls::parse_spiffe_id(id).with_context(|| format!("--allow-spiffe-id {id:?}"))?,
        ));
    }
    for td in &args.allow_trust_domain {
        rules.push(Authorizer::member_of([
            parse_trust_domain(td).with_context(|| format!("--allow-trust-domain {td:?}"))?
        ]));
    }
    for p in &args.allow_spiffe_path_prefix {
        let id = podtls::parse_spiffe_id(p)
            .with_context(|| format!("--allow-spiffe-path-prefix {p:?}"))?;
        rules.push(Authorizer::path_prefix(
            id.trust_domain().clone(),
            id.path(),
        ));
    }
    for ns in &args.allow_pod_namespace {
        if ns.is_empty() {
            bail!("--allow-pod-namespace: empty namespace");
        }
        rules.push(Authorizer::pod_namespace(ns.clone()));
    }
    let allowed = if rules.is_empty() {
        Authorizer::any()
    } else {
        Authorizer::any_of(rules)
    };
    Ok(match &args.require_issuing_cluster {
        None => allowed,
        Some(url) => Authorizer::all_of([
            allowed,
            Authorizer::issued_by(
                podtls::IssuingCluster::new(url.as_str())
                    .with_context(|| format!("--require-issuing-cluster {url:?}"))?,
            ),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(flags: &[&str]) -> Result<Config> {
        let mut argv = vec!["demo-server"];
        argv.extend_from_slice(flags);
        Config::from_args(&Args::try_parse_from(argv)?)
    }

    #[test]
    fn accepts_the_original_flags() {
        let c = parse(&[
            "--listen",
            "127.0.0.1:8443",
            "--server-creds",
            "/c/bundle.pem",
            "--enable-spiffe-client-support",
            "--spiffe-trust-bundle",
            "/t/spiffe.pem",
        ])
        .unwrap();
        assert_eq!(c.credentials, Credentials::Bundle("/c/bundle.pem".into()));
        let s = c.spiffe.unwrap();
        assert_eq!(s.mode, ClientCertMode::Optional);
        assert_eq!(s.bundles[0].0.as_str(), "cluster.local");
    }

    /// The original meshtool's `demo-server` command lines, exactly as its manifests
    /// write them (ahmedtd/mesh-example `example-manifests/*.yaml`, after
    /// `/meshtool demo-server`): each must start a server configured the same way.
    #[test]
    fn accepts_the_original_manifests_command_lines() {
        // service-dns-spiffe-client.yaml: Go's `flag` form `--bool=true`.
        let c = parse(&[
            "--listen=0.0.0.0:443",
            "--server-creds=/run/tls-config/service-dns-cred-bundle.pem",
            "--enable-spiffe-client-support=true",
            "--spiffe-trust-bundle=/run/tls-config/spiffe-trust-bundle.pem",
        ])
        .unwrap();
        assert_eq!(
            c.credentials,
            Credentials::Bundle("/run/tls-config/service-dns-cred-bundle.pem".into())
        );
        let s = c.spiffe.expect("SPIFFE client support is on");
        assert_eq!(s.mode, ClientCertMode::Optional);
        assert_eq!(
            s.bundles[0].1,
            PathBuf::from("/run/tls-config/spiffe-trust-bundle.pem")
        );
        // service-dns-unauth-client.yaml and acme-public-service.yaml: no client auth.
        for creds in [
            "/var/run/service-tls-creds/creds.pem",
            "/run/tls-config/acme-cred-bundle.pem",
        ] {
            let c = parse(&["--listen=0.0.0.0:443", &format!("--server-creds={creds}")]).unwrap();
            assert_eq!(c.credentials, Credentials::Bundle(creds.into()));
            assert!(c.spiffe.is_none());
        }
    }

    #[test]
    fn boolean_flags_take_go_style_values() {
        let base = ["--server-creds=/c.pem", "--spiffe-trust-bundle=/t.pem"];
        let mode = |flags: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(flags);
            parse(&all).map(|c| c.spiffe.map(|s| s.mode))
        };
        let optional = Some(ClientCertMode::Optional);
        let required = Some(ClientCertMode::Required);
        assert_eq!(mode(&["--enable-spiffe-client-support"]).unwrap(), optional);
        assert_eq!(
            mode(&["--enable-spiffe-client-support=true"]).unwrap(),
            optional
        );
        assert_eq!(
            mode(&["--enable-spiffe-client-support=false"]).unwrap(),
            None
        );
        assert_eq!(mode(&[]).unwrap(), None);
        assert_eq!(mode(&["--require-spiffe-client=true"]).unwrap(), required);
        assert_eq!(mode(&["--require-spiffe-client"]).unwrap(), required);
        // As Go's `flag`, a boolean never takes the next argument as its value.
        let err = mode(&["--require-spiffe-client", "false"]).unwrap_err();
        assert!(
            err.to_string().contains("unexpected argument 'false'"),
            "{err}"
        );
        let err = mode(&["--require-spiffe-client=maybe"]).unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn rejects_bad_flag_combinations() {
        for (flags, needle) in [
            (vec![], "server credentials are required"),
            (
                vec!["--server-creds", "a", "--enable-spiffe-client-support"],
                "needs a trust bundle",
            ),
            (
                vec!["--server-creds", "a", "--allow-trust-domain", "x.org"],
                "need --enable-spiffe-client-support",
            ),
            (
                vec![
                    "--server-creds",
                    "a",
                    "--require-spiffe-client",
                    "--spiffe-trust-bundle",
                    "t",
                    "--allow-spiffe-id",
                    "spiffe://X.org/a",
                ],
                "--allow-spiffe-id",
            ),
            (
                vec![
                    "--server-creds",
                    "a",
                    "--require-spiffe-client",
                    "--spiffe-bundle",
                    "nofile",
                ],
                "expected <trust-domain>=<file>",
            ),
            (
                vec![
                    "--server-creds",
                    "a",
                    "--require-spiffe-client",
                    "--spiffe-trust-bundle",
                    "t",
                    "--spiffe-bundle",
                    "cluster.local=u",
                ],
                "given twice",
            ),
        ] {
            let err = format!("{:#}", parse(&flags).unwrap_err());
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
        // clap itself rejects a bundle together with separate key/chain files.
        assert!(parse(&[
            "--server-creds",
            "a",
            "--server-key",
            "k",
            "--server-chain",
            "c"
        ])
        .is_err());
        assert!(parse(&["--server-key", "k"]).is_err());
    }

    #[test]
    fn a_credential_folder_brings_the_bundles_of_every_trust_domain() {
        let c = parse(&[
            "--credential-folder",
            "/run/spiffe",
            "--require-spiffe-client",
            "--allow-trust-domain",
            "b.example",
        ])
        .unwrap();
        assert_eq!(c.credentials, Credentials::Folder("/run/spiffe".into()));
        let s = c.spiffe.unwrap();
        assert_eq!(s.mode, ClientCertMode::Required);
        assert!(s.bundles.is_empty(), "the folder's, not flags'");
        for clash in [
            &["--server-creds", "a"][..],
            &["--spiffe-trust-bundle", "t"],
            &["--spiffe-bundle", "x.org=/x.pem"],
            &["--server-key", "k", "--server-chain", "c"],
        ] {
            let mut flags = vec!["--credential-folder", "/run/spiffe"];
            flags.extend_from_slice(clash);
            assert!(parse(&flags).is_err(), "{clash:?}");
        }
    }

    #[test]
    fn builds_required_mode_with_a_policy() {
        let c = parse(&[
            "--server-key",
            "k",
            "--server-chain",
            "c",
            "--require-spiffe-client",
            "--spiffe-bundle",
            "a.org=/a.pem",
            "--allow-spiffe-path-prefix",
            "spiffe://a.org/ns/payments",
        ])
        .unwrap();
        let s = c.spiffe.unwrap();
        assert_eq!(s.mode, ClientCertMode::Required);
        let ok = podtls::parse_spiffe_id("spiffe://a.org/ns/payments/sa/x").unwrap();
        let no = podtls::parse_spiffe_id("spiffe://a.org/ns/other/sa/x").unwrap();
        assert!(s.authorizer.authorize(&ok).is_ok());
        assert!(s.authorizer.authorize(&no).is_err());
    }
}
