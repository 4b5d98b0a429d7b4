use super::*;

fn svc(ns: &str, name: &str, t: ServiceType, selector: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        namespace: ns.into(),
        name: name.into(),
        service_type: t,
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn pod(ns: &str) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: "db-0".into(),
        uid: "u".into(),
        labels: BTreeMap::from([("app".into(), "db".into())]),
        ..Default::default()
    }
}

fn stateful(ns: &str, host: &str, sub: &str) -> PodInfo {
    PodInfo {
        hostname: Some(host.into()),
        subdomain: Some(sub.into()),
        ..pod(ns)
    }
}

fn chosen(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn names(
    pod: &PodInfo,
    services: &[ServiceInfo],
    chosen: Option<&BTreeSet<String>>,
    options: &DnsNameOptions,
) -> Vec<String> {
    dns_names(pod, services, chosen, options).unwrap().names
}

const APP: &[(&str, &str)] = &[("app", "db")];

#[test]
fn one_name_per_selecting_service_by_default() {
    let services = [
        svc("a", "db", ServiceType::ClusterIp, APP),
        svc("a", "db-read", ServiceType::NodePort, APP),
        svc("a", "other", ServiceType::ClusterIp, &[("app", "web")]),
        svc("b", "db", ServiceType::ClusterIp, APP),
    ];
    assert_eq!(
        names(&pod("a"), &services, None, &DnsNameOptions::new()),
        ["db-read.a.svc", "db.a.svc"]
    );
}

#[test]
fn suffixes_and_the_cluster_domain_add_forms_of_every_name() {
    let options = DnsNameOptions::new()
        .with_suffix("east.example")
        .unwrap()
        .with_suffix("west.example")
        .unwrap()
        .with_suffix("east.example")
        .unwrap()
        .with_cluster_domain("cluster.local")
        .unwrap();
    assert_eq!(options.suffixes(), ["east.example", "west.example"]);
    let services = [svc("a", "db", ServiceType::ClusterIp, APP)];
    assert_eq!(
        names(&pod("a"), &services, None, &options),
        [
            "db.a.svc",
            "db.a.svc.cluster.local",
            "db.a.svc.east.example",
            "db.a.svc.west.example"
        ]
    );
}

#[test]
fn a_statefulset_pod_gets_its_per_pod_name_from_its_headless_service() {
    let options = DnsNameOptions::new()
        .with_suffix("x.example")
        .unwrap()
        .with_cluster_domain("cluster.local")
        .unwrap();
    let services = [
        svc("a", "db", ServiceType::Headless, APP),
        svc("a", "db-read", ServiceType::ClusterIp, APP),
    ];
    assert_eq!(
        names(&stateful("a", "db-0", "db"), &services, None, &options),
        [
            "db-0.db.a.svc",
            "db-0.db.a.svc.cluster.local",
            "db-0.db.a.svc.x.example",
            "db-read.a.svc",
            "db-read.a.svc.cluster.local",
            "db-read.a.svc.x.example",
            "db.a.svc",
            "db.a.svc.cluster.local",
            "db.a.svc.x.example",
        ]
    );
    // Hostname without subdomain, or subdomain without hostname: no per-pod name.
    let mut half = stateful("a", "db-0", "db");
    half.subdomain = None;
    assert_eq!(
        names(&half, &services, None, &DnsNameOptions::new()),
        ["db-read.a.svc", "db.a.svc"]
    );
    half = stateful("a", "db-0", "db");
    half.hostname = None;
    assert_eq!(
        names(&half, &services, None, &DnsNameOptions::new()),
        ["db-read.a.svc", "db.a.svc"]
    );
}

#[test]
fn attack_a_subdomain_naming_a_non_headless_service_gets_no_per_pod_name() {
    // The pod points its subdomain at db-read, which is ClusterIP: DNS serves no
    // per-pod name there, so neither does the signer.
    let services = [svc("a", "db-read", ServiceType::ClusterIp, APP)];
    let p = stateful("a", "db-0", "db-read");
    assert_eq!(
        names(&p, &services, None, &DnsNameOptions::new()),
        ["db-read.a.svc"]
    );
}

#[test]
fn attack_a_subdomain_naming_a_headless_service_of_another_namespace_gets_nothing_from_it() {
    // Headless "db" in namespace b selects app=db, but the pod is in a.
    let services = [
        svc("b", "db", ServiceType::Headless, APP),
        svc("a", "web", ServiceType::ClusterIp, APP),
    ];
    let p = stateful("a", "db-0", "db");
    assert_eq!(
        names(&p, &services, None, &DnsNameOptions::new()),
        ["web.a.svc"]
    );
}

#[test]
fn attack_a_subdomain_naming_a_headless_service_that_does_not_select_the_pod() {
    let services = [svc("a", "db", ServiceType::Headless, &[("app", "other")])];
    let p = stateful("a", "db-0", "db");
    assert!(names(&p, &services, None, &DnsNameOptions::new()).is_empty());
}

#[test]
fn chosen_services_narrow_the_names_to_a_subset() {
    let services = [
        svc("a", "db", ServiceType::Headless, APP),
        svc("a", "db-read", ServiceType::ClusterIp, APP),
        svc("a", "db-admin", ServiceType::ClusterIp, APP),
    ];
    let p = stateful("a", "db-0", "db");
    assert_eq!(
        names(
            &p,
            &services,
            Some(&chosen(&["db-read"])),
            &DnsNameOptions::new()
        ),
        ["db-read.a.svc"]
    );
    // The headless Service chosen: its per-pod name comes with it.
    assert_eq!(
        names(
            &p,
            &services,
            Some(&chosen(&["db", "db-admin"])),
            &DnsNameOptions::new()
        ),
        ["db-0.db.a.svc", "db-admin.a.svc", "db.a.svc"]
    );
}

#[test]
fn attack_choosing_a_service_that_does_not_select_the_pod_is_never_issued() {
    let services = [
        svc("a", "db", ServiceType::ClusterIp, APP),
        svc(
            "a",
            "payments",
            ServiceType::ClusterIp,
            &[("app", "payments")],
        ),
        svc("b", "db-b", ServiceType::ClusterIp, APP),
    ];
    for wanted in [
        &["payments"][..],
        &["db", "payments"],
        &["db-b"],
        &["does-not-exist"],
    ] {
        let err = dns_names(
            &pod("a"),
            &services,
            Some(&chosen(wanted)),
            &DnsNameOptions::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.reason,
            PendingReason::ChosenServiceNotSelecting,
            "{wanted:?}"
        );
        assert!(err.message.contains(wanted[wanted.len() - 1]), "{err}");
    }
    // Even a caller passing Services that do not select the pod gets only real ones.
    assert_eq!(
        names(&pod("a"), &services, None, &DnsNameOptions::new()),
        ["db.a.svc"]
    );
}

#[test]
fn parses_the_services_annotation() {
    let ann = |v: &str| BTreeMap::from([(SERVICES_ANNOTATION.to_string(), v.to_string())]);
    assert_eq!(chosen_services(&BTreeMap::new()).unwrap(), None);
    assert_eq!(
        chosen_services(&ann("web, web-admin,web")).unwrap(),
        Some(chosen(&["web", "web-admin"]))
    );
    for bad in [
        "",
        "web,",
        ",web",
        "Web",
        "web admin",
        "web.a.svc",
        "-web",
        &"a".repeat(64),
    ] {
        let err = chosen_services(&ann(bad)).unwrap_err();
        assert_eq!(
            err.reason,
            DenialReason::InvalidUnverifiedUserAnnotations,
            "{bad:?}"
        );
        assert!(err.message.contains(SERVICES_ANNOTATION), "{err:?}");
    }
}

#[test]
fn attack_a_name_over_253_characters_is_left_out_never_issued() {
    // 63-character hostname, subdomain and namespace, and a long suffix: the per-pod
    // suffixed form is too long; every other form fits.
    let l63 = |c: char| std::iter::repeat_n(c, 63).collect::<String>();
    let (host, sub, ns) = (l63('h'), l63('s'), l63('n'));
    let suffix = format!("{}.example", "x".repeat(50));
    let options = DnsNameOptions::new().with_suffix(&suffix).unwrap();
    let services = [svc(&ns, &sub, ServiceType::Headless, APP)];
    let mut p = stateful(&ns, &host, &sub);
    p.namespace = ns.clone();
    let out = dns_names(&p, &services, None, &options).unwrap();
    let long = format!("{host}.{sub}.{ns}.svc.{suffix}");
    assert!(long.len() > MAX_DNS_NAME_LEN);
    assert_eq!(out.left_out, [long]);
    assert_eq!(
        out.names,
        [
            format!("{host}.{sub}.{ns}.svc"),
            format!("{sub}.{ns}.svc"),
            format!("{sub}.{ns}.svc.{suffix}"),
        ]
    );
    assert!(out.names.iter().all(|n| n.len() <= MAX_DNS_NAME_LEN));
}

#[test]
fn refuses_suffixes_and_domains_that_are_no_dns_names() {
    for bad in [
        "",
        "Example.org",
        ".example.org",
        "example.org.",
        "ex ample.org",
        "-x.org",
        "a..b",
        &format!("{}.org", "a".repeat(64)),
        &vec!["a"; 124].join("."),
    ] {
        let err = DnsNameOptions::new().with_suffix(bad).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidDnsName {
                    flag: "--dns-suffix",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
        assert!(DnsNameOptions::new().with_cluster_domain(bad).is_err());
    }
}
