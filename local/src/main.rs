//! podtls-local: the whole system on one machine, no cluster.
//!
//! ```text
//! cargo run --release -p podtls-local -- [--duration 30s] [--rotate-every 3s] [--work-dir DIR]
//! ```
//!
//! It runs a local CA per signer (`row-major.net/service-dns`,
//! `row-major.net/spiffe`) with the signer's own issuance code, a kubelet
//! stand-in that requests and projects every pod's certificate and trust
//! bundles with kubelet's atomic-writer layout, and the four example pairs
//! as real demo-server / demo-client processes:
//! service-dns server + unauthenticated client, service-dns server + SPIFFE
//! client (the echo shows the client's SPIFFE ID), and full SPIFFE (the client
//! checks the server's SPIFFE ID). Certificates are reissued every
//! `--rotate-every`; the trust anchors rotate once (CA 2 added, CA 2 signs,
//! CA 1 retired). A live table shows each pair's latest response, the
//! certificates issued and seen in traffic, and ok / failed counts. It ends
//! after `--duration` (0 = until Ctrl-C) with a summary, and exits non-zero
//! if any request failed or a rotation was never seen in traffic.
//!
//! A fourth pair spans two trust domains: the server in `cluster.local`, the
//! client in `partner.example` (its own signer and CA pool), both reading a
//! SPIFFE credential folder. Federation is added at a sixth of the run and
//! removed at three fifths (the server's bundle of `partner.example` written
//! empty, as kubelet does when the ClusterTrustBundle goes away): the pair is
//! refused before, served during, and refused again after, which the display
//! marks as expected; its "failed" column counts only what is not.

mod display;
mod federation;
mod kubelet;
mod procs;
mod system;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::io::AsyncBufReadExt;

use display::PairState;
use federation::{Federation, Phase, Verdict};
use kubelet::PodVolumes;
use system::{PairKind, System, PARTNER_TRUST_DOMAIN, TRUST_DOMAIN};

/// Runs the signers, a kubelet stand-in and the four demo pairs locally.
#[derive(Debug, Parser)]
#[command(name = "podtls-local", version)]
struct Args {
    /// How long to run (0s: until Ctrl-C).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Reissue every pod certificate this often.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    rotate_every: Duration,

    /// Time between requests of each demo client.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    request_interval: Duration,

    /// Where volumes and logs go (default: a temporary directory, removed at exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

struct Trust {
    label: &'static str,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("podtls-local: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let bins = procs::demo_binaries()?;
    let tmp;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a work directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(work.join("logs"))?;
    let mut system = System::new(SystemTime::now())?;
    let mut trust = Trust { label: "CA1" };

    // Kubelet stand-in: volumes, first certificates, trust bundles.
    let mut volumes = Vec::new();
    for pair in &system.pairs {
        let folder = pair.uses_credential_folder();
        let server = PodVolumes::new(&work.join("pods"), &pair.server.info, folder)?;
        let client = PodVolumes::new(&work.join("pods"), &pair.client.info, folder)?;
        volumes.push((server, client));
    }
    // Outcomes of the cross pair within this long of a federation switch are
    // not judged: demo-client keeps connections for up to 1 s (its
    // --max-connection-age below), and one request may be in flight.
    let grace = Duration::from_secs(1) + 2 * args.request_interval + Duration::from_millis(500);
    let state = Arc::new(Mutex::new(
        system
            .pairs
            .iter()
            .map(|p| PairState {
                label: p.label().to_string(),
                federation: p
                    .uses_credential_folder()
                    .then(|| Federation::new(Instant::now(), grace)),
                ..PairState::default()
            })
            .collect::<Vec<_>>(),
    ));
    let mut federated = false;
    project_all(&system, &volumes, &state, true, federated)?;

    // The demo pairs, as real processes.
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    for (i, (pair, (sv, cv))) in system.pairs.iter().zip(&volumes).enumerate() {
        let spiffe_bundle = sv.trust("spiffe.pem").display().to_string();
        let mut server_args = match sv.credential_folder() {
            Some(folder) => vec![
                "--credential-folder".to_string(),
                folder.display().to_string(),
            ],
            None => vec![
                "--server-creds".to_string(),
                sv.bundle().display().to_string(),
            ],
        };
        match pair.kind {
            PairKind::Federated => server_args.extend([
                "--require-spiffe-client".into(),
                "--allow-trust-domain".into(),
                PARTNER_TRUST_DOMAIN.into(),
            ]),
            PairKind::ServiceDnsUnauthClient => {}
            PairKind::ServiceDnsSpiffeClient => server_args.extend([
                "--enable-spiffe-client-support".into(),
                "--spiffe-trust-bundle".into(),
                spiffe_bundle,
                "--spiffe-trust-domain".into(),
                TRUST_DOMAIN.into(),
            ]),
            PairKind::FullSpiffe => server_args.extend([
                "--require-spiffe-client".into(),
                "--spiffe-trust-bundle".into(),
                spiffe_bundle,
                "--spiffe-trust-domain".into(),
                TRUST_DOMAIN.into(),
                "--allow-trust-domain".into(),
                TRUST_DOMAIN.into(),
            ]),
            PairKind::PodIdentity => server_args.extend([
                "--require-spiffe-client".into(),
                "--spiffe-trust-bundle".into(),
                sv.trust("pod-identity.pem").display().to_string(),
                "--spiffe-trust-domain".into(),
                TRUST_DOMAIN.into(),
                "--allow-pod-namespace".into(),
                pair.namespace.into(),
                "--require-issuing-cluster".into(),
                system::ISSUER.into(),
            ]),
        }
        let server_log = work
            .join("logs")
            .join(format!("{}-server.log", pair.namespace));
        let server =
            procs::start_server(&bins.join("demo-server"), &server_args, &server_log).await?;
        let host = pair.server_host();
        let path = match pair.kind {
            PairKind::ServiceDnsUnauthClient => "/healthz",
            _ => "/spiffe-echo",
        };
        let mut client_args = vec![
            "--fetch-url".to_string(),
            format!("https://{host}:{}{path}", server.port),
            "--resolve".into(),
            format!("{host}:{}:127.0.0.1", server.port),
            "--interval".into(),
            humantime::format_duration(args.request_interval).to_string(),
            "--timeout".into(),
            "5s".into(),
            // Keep-alive connections are recycled every second so that new
            // connections (and so rotations) show up in the display.
            "--max-connection-age".into(),
            "1s".into(),
        ];
        match pair.kind {
            PairKind::Federated => client_args.extend([
                "--server-spiffe-id".into(),
                pair.server_spiffe_id(),
                "--credential-folder".into(),
                cv.credential_folder()
                    .context("credential folder")?
                    .display()
                    .to_string(),
            ]),
            PairKind::FullSpiffe => client_args.extend([
                "--server-spiffe-id".into(),
                pair.server_spiffe_id(),
                "--spiffe-trust-bundle".into(),
                cv.trust("spiffe.pem").display().to_string(),
            ]),
            PairKind::PodIdentity => client_args.extend([
                "--server-spiffe-id".into(),
                pair.server_spiffe_id(),
                "--spiffe-trust-bundle".into(),
                cv.trust("pod-identity.pem").display().to_string(),
            ]),
            _ => client_args.extend([
                "--server-trust-bundle".into(),
                cv.trust("service-dns.pem").display().to_string(),
            ]),
        }
        if pair.client.signer.is_some() && !pair.uses_credential_folder() {
            client_args.extend([
                "--client-cred-bundle".into(),
                cv.bundle().display().to_string(),
            ]);
        }
        let client_log = work
            .join("logs")
            .join(format!("{}-client.log", pair.namespace));
        let (client, stdout) =
            procs::start_client(&bins.join("demo-client"), &client_args, &client_log)?;
        servers.push(server.child);
        clients.push(client);
        let state = state.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(f) = procs::Fetch::parse(&line) else {
                    continue;
                };
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                let p = &mut st[i];
                let ok = f.status.is_some_and(|c| (200..300).contains(&c));
                let outcome = format!(
                    "{} {}",
                    f.status.map_or("FAILED".into(), |c| c.to_string()),
                    f.body
                );
                let verdict = match p.federation.as_mut() {
                    Some(fed) => fed.judge(ok, Instant::now()),
                    None if ok => Verdict::Ok,
                    None => Verdict::Failed,
                };
                match verdict {
                    Verdict::Ok => p.ok += 1,
                    Verdict::Failed => {
                        p.failed += 1;
                        p.last_failure = Some(outcome);
                    }
                    Verdict::Leaked => {
                        p.failed += 1;
                        p.last_failure = Some(format!(
                            "served while NOT federated (must be refused): {outcome}"
                        ));
                    }
                    Verdict::Refused | Verdict::Transition => {}
                }
                p.last = format!(
                    "{} {}",
                    f.status.map_or("FAILED".into(), |c| c.to_string()),
                    f.body
                );
                p.server_seen.extend(f.server_serial);
                p.client_seen.extend(f.client_serial);
            }
        }));
    }

    // The rotation schedule and the display.
    let start = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut next_rotation = start + args.rotate_every;
    let mut next_draw = start;
    // Federation added at a sixth of the run, removed at three fifths
    // (10 s and 40 s when running until Ctrl-C).
    let run_for = if args.duration.is_zero() {
        Duration::from_secs(60)
    } else {
        args.duration
    };
    let federate_at = start + run_for / 6;
    let defederate_at = start + run_for * 3 / 5;
    let mut federation_removed = false;
    let mut rotation = 0u32;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let elapsed = start.elapsed();
        if !args.duration.is_zero() && elapsed >= args.duration {
            break;
        }
        let now = Instant::now();
        if !federated && !federation_removed && now >= federate_at {
            federated = true;
            project_federation(&system, &volumes, federated)?;
            switch_phase(&state, Phase::Federated);
        } else if federated && now >= defederate_at {
            federated = false;
            federation_removed = true;
            project_federation(&system, &volumes, federated)?;
            switch_phase(&state, Phase::Removed);
        }
        if now >= next_rotation {
            rotation += 1;
            // Trust-anchor rotation: add CA 2, then sign with it, then retire CA 1.
            match rotation {
                3 => {
                    for s in system.signers_mut() {
                        s.add_second_ca(SystemTime::now())?;
                    }
                    trust.label = "CA1+CA2";
                }
                5 => {
                    for s in system.signers_mut() {
                        s.sign_with_second_ca(SystemTime::now())?;
                    }
                    trust.label = "CA1+CA2, CA2 signs";
                }
                7 => {
                    for s in system.signers_mut() {
                        s.retire_first_ca(SystemTime::now())?;
                    }
                    trust.label = "CA2";
                }
                _ => {}
            }
            project_all(
                &system,
                &volumes,
                &state,
                rotation == 3 || rotation == 7,
                federated,
            )?;
            next_rotation += args.rotate_every;
        }
        if now >= next_draw {
            let header = format!(
                "podtls local system: {:.0}s{}  rotation every {}  trust anchors: {}  work dir: {}",
                elapsed.as_secs_f64(),
                if args.duration.is_zero() {
                    String::new()
                } else {
                    format!(" of {}", humantime::format_duration(args.duration))
                },
                humantime::format_duration(args.rotate_every),
                trust.label,
                work.display()
            );
            let screen = display::render(&header, &state.lock().unwrap_or_else(|p| p.into_inner()));
            if tty {
                print!("\x1b[2J\x1b[H{screen}");
            } else {
                println!("{screen}");
            }
            next_draw += if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            };
        }
        let mut wake = next_rotation.min(next_draw);
        if !federation_removed {
            wake = wake.min(if federated {
                defederate_at
            } else {
                federate_at
            });
        }
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    // Clients first, so no request meets a server that is already gone.
    for mut c in clients {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    for r in readers {
        let _ = r.await;
    }
    for mut s in servers {
        let _ = s.start_kill();
        let _ = s.wait().await;
    }

    let st = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "\nsummary after {:.0}s ({rotation} rotations, trust anchors now {}):",
        start.elapsed().as_secs_f64(),
        trust.label
    );
    let mut good = true;
    for p in &st {
        let (s_seen, c_seen) = p.rotations_seen();
        let client = if p.client_issued.is_empty() {
            "no client certificate".to_string()
        } else {
            format!("client certs seen {c_seen}/{}", p.client_issued.len())
        };
        println!(
            "  {:<38} {} ok, {} failed, server certs seen {s_seen}/{}, {client}",
            p.label,
            p.ok,
            p.failed,
            p.server_issued.len()
        );
        if let Some(f) = &p.federation {
            println!(
                "  {:<38} federation: {} refused before it was added, {} refused after it was removed (expected: fail closed), {} not judged (within {:?} of a switch)",
                "", f.refused_before, f.refused_after, f.in_transition, grace
            );
            // Fail closed after de-federation is part of what must be seen.
            good &= !federation_removed || f.refused_after > 0;
        }
        if let Some(f) = &p.last_failure {
            println!("  {:<38} last failure: {f}", "");
        }
        good &= p.failed == 0
            && p.ok > 0
            && s_seen >= 2.min(p.server_issued.len())
            && c_seen >= 2.min(p.client_issued.len());
    }
    println!(
        "{}",
        if good {
            "result: OK, every rotation was seamless"
        } else {
            "result: FAILED (see above and the logs)"
        }
    );
    if args.work_dir.is_none() && !good {
        // Keep the logs of a failed run.
        let kept = std::env::temp_dir().join(format!("podtls-local-{}", std::process::id()));
        let _ = std::fs::rename(&work, &kept);
        println!("logs kept in {}", kept.display());
    }
    Ok(good)
}

fn switch_phase(state: &Mutex<Vec<PairState>>, phase: Phase) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for p in st.iter_mut() {
        if let Some(f) = p.federation.as_mut() {
            f.switch(phase, Instant::now());
        }
    }
}

/// The credential folders' trust bundles, as kubelet projects them from the
/// ClusterTrustBundles labelled per (workload trust domain, peer trust
/// domain): the server (`cluster.local`) gets `partner.example`'s bundle only
/// while federated, written empty after; the client (`partner.example`)
/// keeps `cluster.local`'s (its own relationship is not removed).
fn project_federation(
    system: &System,
    volumes: &[(PodVolumes, PodVolumes)],
    federated: bool,
) -> Result<()> {
    let own = system.spiffe.pool.trust_bundle_pem();
    let partner = system.partner.pool.trust_bundle_pem();
    for (pair, (sv, cv)) in system.pairs.iter().zip(volumes) {
        if !pair.uses_credential_folder() {
            continue;
        }
        sv.project_folder_trust(&[
            (TRUST_DOMAIN, Some(own.clone())),
            (PARTNER_TRUST_DOMAIN, federated.then(|| partner.clone())),
        ])?;
        cv.project_folder_trust(&[
            (PARTNER_TRUST_DOMAIN, Some(partner.clone())),
            (TRUST_DOMAIN, Some(own.clone())),
        ])?;
    }
    Ok(())
}

/// The kubelet stand-in's pass: new certificates for every pod with a
/// signer, and (when `trust` is set) the trust bundles.
fn project_all(
    system: &System,
    volumes: &[(PodVolumes, PodVolumes)],
    state: &Mutex<Vec<PairState>>,
    trust: bool,
    federated: bool,
) -> Result<()> {
    let now = SystemTime::now();
    if trust {
        project_federation(system, volumes, federated)?;
    }
    for (i, (pair, (sv, cv))) in system.pairs.iter().zip(volumes).enumerate() {
        if trust && !pair.uses_credential_folder() {
            for v in [sv, cv] {
                v.project_trust(
                    &system.service_dns.pool,
                    &system.spiffe.pool,
                    &system.pod_identity.pool,
                )?;
            }
        }
        for (pod, vol, is_server) in [(&pair.server, sv, true), (&pair.client, cv, false)] {
            let Some(signer_name) = &pod.signer else {
                continue;
            };
            let signer = system.signer(signer_name).context("unknown signer")?;
            let serial = vol.refresh(
                pod,
                &signer.config,
                &signer.pool,
                std::slice::from_ref(&pair.service),
                now,
            )?;
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if is_server {
                st[i].server_issued.push(serial);
            } else {
                st[i].client_issued.push(serial);
            }
        }
    }
    Ok(())
}
