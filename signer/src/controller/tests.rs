//! Reconciler tests against a mocked API server (kube's `tower-test` pattern): each test
//! drives the reconciler and answers, then checks, every HTTP request it makes. Once the
//! reconciler has returned and its context is dropped, the mock must see no further
//! request (`next_request` yields `None` only when every client clone is gone).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{
    Node, Pod, PodCertificateProjection, PodSpec, ProjectedVolumeSource, Service, ServiceAccount,
    ServiceSpec, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList, ObjectMeta};
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::core::{ApiResource, PartialObjectMeta, PartialObjectMetaExt as _, TypeMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::watch;
use tower_test::mock::{self, Handle};

use super::*;
use crate::test_util::RequesterKey;
use crate::{generate_ca, parse_trust_domain, CaPool, KeyType, SignerConfig};

type MockHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "t";
const NAME: &str = "req-1";
const POD_UID: &str = "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10";
const PCR_PATH: &str =
    "/apis/certificates.k8s.io/v1beta1/namespaces/t/podcertificaterequests/req-1";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn pcr_api() -> ApiResource {
    ApiResource {
        group: "certificates.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "certificates.k8s.io/v1beta1".into(),
        kind: "PodCertificateRequest".into(),
        plural: "podcertificaterequests".into(),
    }
}

fn ctb_api() -> ApiResource {
    ApiResource {
        kind: "ClusterTrustBundle".into(),
        plural: "clustertrustbundles".into(),
        ..pcr_api()
    }
}

fn pool() -> CaPool {
    let ca = generate_ca(
        "ca-1",
        KeyType::EcdsaP256,
        now() - Duration::from_secs(3600),
        Duration::from_secs(365 * 86_400),
    )
    .unwrap();
    CaPool::single(ca)
}

fn spiffe() -> SignerConfig {
    SignerConfig::spiffe(parse_trust_domain("cluster.local").unwrap())
}

/// A PodCertificateRequest as kube-apiserver 1.35 serves it (pkix key + proof).
fn pcr(signer: &str, created_ago: Duration) -> PodCertificateRequest {
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    PodCertificateRequest {
        types: Some(TypeMeta {
            api_version: "certificates.k8s.io/v1beta1".into(),
            kind: "PodCertificateRequest".into(),
        }),
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(NAME.into()),
            resource_version: Some("7".into()),
            generation: Some(1),
            creation_timestamp: Some(k8s_time(now() - created_ago)),
            ..Default::default()
        },
        spec: PodCertificateRequestSpec {
            signer_name: signer.into(),
            pod_name: "web-0".into(),
            pod_uid: POD_UID.into(),
            service_account_name: "web".into(),
            service_account_uid: "sa-uid".into(),
            node_name: "node-1".into(),
            node_uid: "node-uid".into(),
            max_expiration_seconds: Some(86_400),
            pkix_public_key: Some(ByteString(key.spki_der().to_vec())),
            proof_of_possession: Some(ByteString(key.proof_of_possession(POD_UID))),
            ..Default::default()
        },
        status: None,
    }
}

fn terminal(mut pcr: PodCertificateRequest, rv: &str) -> PodCertificateRequest {
    pcr.metadata.resource_version = Some(rv.into());
    pcr.status = Some(denied_status(
        &crate::Denial {
            reason: crate::DenialReason::PodUidMismatch,
            message: "someone else".into(),
        },
        now(),
        Some(1),
    ));
    pcr
}

struct Setup {
    signer: SignerConfig,
    pool: PoolState,
    pods: Vec<Pod>,
    nodes: Vec<PartialObjectMeta<Node>>,
    service_accounts: Vec<PartialObjectMeta<ServiceAccount>>,
    services: Vec<Service>,
    trust_domains: Option<Arc<TrustDomains>>,
}

impl Setup {
    fn spiffe() -> Setup {
        Setup {
            signer: spiffe(),
            pool: PoolState::fixed("/pool", pool()),
            pods: vec![web_pod(POD_UID)],
            nodes: vec![meta("node-1", None, "node-uid")],
            service_accounts: vec![meta("web", Some(NS), "sa-uid")],
            services: vec![],
            trust_domains: None,
        }
    }

    fn service_dns() -> Setup {
        Setup {
            signer: SignerConfig::service_dns(),
            ..Setup::spiffe()
        }
    }

    fn context(self) -> (Arc<Context>, MockHandle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let cluster = ClusterView::from_objects(self.pods, self.nodes, self.service_accounts);
        let services = ServiceCache::fixed(self.services);
        let (_tx, pool) = watch::channel(self.pool);
        let ctx = Context {
            client: client.clone(),
            pcr_api: pcr_api(),
            signer: self.signer,
            pool,
            trust_domains: self.trust_domains,
            cluster,
            services,
            sharding: Sharding::Off,
            metrics: Arc::new(Metrics::new()),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "podtls-signer".into(),
                    instance: None,
                },
            ),
            clock: Arc::new(now),
        };
        (Arc::new(ctx), handle)
    }
}

/// The pod `web-0` (app=web) as kubelet would run it: bound to node-1, ServiceAccount
/// web, a projected volume with an ECDSAP256 source for each of the two signers.
fn web_pod(uid: &str) -> Pod {
    let source = |signer: &str| VolumeProjection {
        pod_certificate: Some(PodCertificateProjection {
            signer_name: signer.into(),
            key_type: "ECDSAP256".into(),
            credential_bundle_path: Some("credentialbundle.pem".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some("web-0".into()),
            uid: Some(uid.into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("web".into()),
            node_name: Some("node-1".into()),
            volumes: Some(vec![Volume {
                name: "tls".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![
                        source("row-major.net/spiffe"),
                        source("row-major.net/service-dns"),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn meta<K: kube::Resource<DynamicType = ()>>(
    name: &str,
    namespace: Option<&str>,
    uid: &str,
) -> PartialObjectMeta<K> {
    let mut m = ObjectMeta {
        namespace: namespace.map(str::to_string),
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..Default::default()
    }
    .into_request_partial::<K>();
    m.types = None;
    m
}

/// The metadata-only answer to a GET with `as=PartialObjectMetadata`.
fn meta_json<K: kube::Resource<DynamicType = ()>>(
    name: &str,
    namespace: Option<&str>,
    uid: &str,
) -> Value {
    let mut v = serde_json::to_value(meta::<K>(name, namespace, uid)).unwrap();
    v["apiVersion"] = json!("meta.k8s.io/v1");
    v["kind"] = json!("PartialObjectMetadata");
    v
}

fn service(name: &str, selector: &[(&str, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(
                selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The next request, its JSON body, and the responder.
async fn next(
    handle: &mut MockHandle,
) -> (
    http::request::Parts,
    Value,
    mock::SendResponse<Response<Body>>,
) {
    let (request, send) = handle.next_request().await.expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts, value, send)
}

fn reply(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
           "message": "the object has been modified", "code": 409})
}

/// Asserts the mock sees no further request once every client is gone.
async fn assert_no_more_requests(mut handle: MockHandle) {
    if let Some((request, _)) = handle.next_request().await {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

fn assert_status_put(parts: &http::request::Parts, body: &Value, rv: &str, condition: &str) {
    assert_eq!(parts.method, Method::PUT);
    assert_eq!(parts.uri.path(), format!("{PCR_PATH}/status"));
    assert_eq!(body["apiVersion"], "certificates.k8s.io/v1beta1");
    assert_eq!(body["kind"], "PodCertificateRequest");
    assert_eq!(body["metadata"]["resourceVersion"], rv, "the precondition");
    let conditions = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{body}");
    assert_eq!(conditions[0]["type"], condition);
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[0]["lastTransitionTime"], "2030-03-17T17:46:40Z");
}

#[tokio::test]
async fn issues_with_one_status_update_holding_chain_and_times() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Issued");
    let status = &body["status"];
    assert_eq!(status["conditions"][0]["reason"], "Issued");
    assert!(status["certificateChain"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        status["notBefore"], "2030-03-17T17:44:40Z",
        "now - 2 min backdate"
    );
    assert_eq!(status["notAfter"], "2030-03-18T17:44:40Z", "24 h");
    assert_eq!(
        status["beginRefreshAt"], "2030-03-18T17:14:40Z",
        "notAfter - 30 min"
    );
    // The spec goes back unchanged.
    assert_eq!(body["spec"]["podUID"], POD_UID);
    assert!(body["spec"]["pkixPublicKey"].is_string());
    assert!(body["spec"].get("stubPKCS10Request").is_none());
    reply(send, StatusCode::OK, &body);
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::await_change());
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn conflict_then_terminal_rereads_once_and_writes_nothing_more() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let metrics = ctx.metrics.clone();
    let original = pcr("row-major.net/spiffe", Duration::from_secs(1));
    let task = tokio::spawn(reconcile(Arc::new(original.clone()), ctx));
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Issued");
    reply(send, StatusCode::CONFLICT, &conflict());
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::GET);
    assert_eq!(parts.uri.path(), PCR_PATH);
    reply(
        send,
        StatusCode::OK,
        &serde_json::to_value(terminal(original, "8")).unwrap(),
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_no_more_requests(handle).await;
    assert!(metrics
        .encode()
        .contains(r#"status_conflicts_total{signer="row-major.net/spiffe",outcome="terminal"} 1"#));
}

#[tokio::test]
async fn conflict_then_still_pending_decides_again_with_the_fresh_resource_version() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let original = pcr("row-major.net/spiffe", Duration::from_secs(1));
    let task = tokio::spawn(reconcile(Arc::new(original.clone()), ctx));
    let (_, _, send) = next(&mut handle).await;
    reply(send, StatusCode::CONFLICT, &conflict());
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::GET);
    let mut fresh = original;
    fresh.metadata.resource_version = Some("8".into());
    reply(send, StatusCode::OK, &serde_json::to_value(&fresh).unwrap());
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "8", "Issued");
    reply(send, StatusCode::OK, &body);
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn two_conflicts_in_a_row_are_an_error_not_a_terminal_status() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let original = pcr("row-major.net/spiffe", Duration::from_secs(1));
    let task = tokio::spawn(reconcile(Arc::new(original.clone()), ctx));
    for _ in 0..2 {
        let (parts, _, send) = next(&mut handle).await;
        assert_eq!(parts.method, Method::PUT);
        reply(send, StatusCode::CONFLICT, &conflict());
        let (parts, _, send) = next(&mut handle).await;
        assert_eq!(parts.method, Method::GET);
        reply(
            send,
            StatusCode::OK,
            &serde_json::to_value(&original).unwrap(),
        );
    }
    let error = task.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::ConflictPersists { .. }), "{error}");
    assert_eq!(error.step(), "conflict");
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn terminal_requests_and_other_signers_requests_are_untouched() {
    let (ctx, handle) = Setup::spiffe().context();
    let done = terminal(pcr("row-major.net/spiffe", Duration::from_secs(1)), "9");
    assert_eq!(
        reconcile(Arc::new(done), ctx.clone()).await.unwrap(),
        Action::await_change()
    );
    let other = pcr("example.com/other", Duration::from_secs(1));
    assert_eq!(
        reconcile(Arc::new(other), ctx).await.unwrap(),
        Action::await_change()
    );
    assert_no_more_requests(handle).await;
}

/// Expects a Denied status write with `reason`, then the Event, then nothing.
async fn expect_denial(
    mut handle: MockHandle,
    task: tokio::task::JoinHandle<Result<Action, Error>>,
    reason: &str,
) {
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Denied");
    assert_eq!(body["status"]["conditions"][0]["reason"], reason);
    assert!(body["status"].get("certificateChain").is_none());
    reply(send, StatusCode::OK, &body);
    let (parts, event, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::POST);
    assert_eq!(
        parts.uri.path(),
        "/apis/events.k8s.io/v1/namespaces/t/events"
    );
    assert_eq!(event["reason"], reason);
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], NAME);
    assert_eq!(event["regarding"]["kind"], "PodCertificateRequest");
    reply(send, StatusCode::CREATED, &event);
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn unknown_user_annotation_is_denied_with_an_event() {
    let (ctx, handle) = Setup::spiffe().context();
    let mut request = pcr("row-major.net/spiffe", Duration::from_secs(1));
    request.spec.unverified_user_annotations =
        Some([("example.com/foo".to_string(), "bar".to_string())].into());
    let task = tokio::spawn(reconcile(Arc::new(request), ctx));
    expect_denial(handle, task, "InvalidUnverifiedUserAnnotations").await;
}

#[tokio::test]
async fn malformed_public_key_is_denied() {
    let (ctx, handle) = Setup::spiffe().context();
    let mut request = pcr("row-major.net/spiffe", Duration::from_secs(1));
    request.spec.pkix_public_key = Some(ByteString(b"not a key".to_vec()));
    let task = tokio::spawn(reconcile(Arc::new(request), ctx));
    expect_denial(handle, task, "InvalidPublicKey").await;
}

#[tokio::test]
async fn missing_key_material_is_denied() {
    let (ctx, handle) = Setup::spiffe().context();
    let mut request = pcr("row-major.net/spiffe", Duration::from_secs(1));
    request.spec.pkix_public_key = None;
    request.spec.proof_of_possession = None;
    let task = tokio::spawn(reconcile(Arc::new(request), ctx));
    expect_denial(handle, task, "InvalidKeyMaterial").await;
}

#[tokio::test]
async fn refused_key_type_is_denied_as_unsupported() {
    let mut setup = Setup::spiffe();
    setup.signer = setup.signer.with_allowed_key_types([KeyType::Ed25519]);
    let (ctx, handle) = setup.context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    expect_denial(handle, task, "UnsupportedKeyType").await;
}

#[tokio::test]
async fn service_dns_issues_for_the_selecting_service_from_the_caches() {
    let mut setup = Setup::service_dns();
    setup.services = vec![
        service("web", &[("app", "web")]),
        service("db", &[("app", "db")]),
    ];
    let (ctx, mut handle) = setup.context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/service-dns", Duration::from_secs(1))),
        ctx,
    ));
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Issued");
    let chain = body["status"]["certificateChain"].as_str().unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = format!(
        "{:?}",
        leaf.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        sans.contains("web.t.svc") && !sans.contains("db.t.svc"),
        "{sans}"
    );
    reply(send, StatusCode::OK, &body);
    task.await.unwrap().unwrap();
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn missing_pod_or_service_stays_pending_at_any_age_and_writes_nothing() {
    // The old signer denied both after 10 minutes: a Service deleted and re-created
    // across a refresh stranded the pod for good.
    let cases = [
        ("row-major.net/service-dns", "no pod"),
        ("row-major.net/service-dns", "no Service"),
        ("row-major.net/spiffe", "no pod"),
    ];
    for (signer, what) in cases {
        let mut setup = if signer.ends_with("spiffe") {
            Setup::spiffe()
        } else {
            Setup::service_dns()
        };
        if what == "no pod" {
            setup.pods = vec![];
            setup.services = vec![service("web", &[("app", "web")])];
        }
        let (ctx, handle) = setup.context();
        for age in [1, 601, 3600, 86_400] {
            let action = reconcile(Arc::new(pcr(signer, Duration::from_secs(age))), ctx.clone())
                .await
                .unwrap();
            assert_eq!(
                action,
                Action::requeue(PENDING_RECHECK),
                "{signer}, {what}, {age}s old"
            );
        }
        drop(ctx);
        assert_no_more_requests(handle).await;
    }
}

#[tokio::test]
async fn spiffe_signer_checks_the_live_pod_and_issues_nothing_without_it() {
    // Today's spiffe signer looked at no pod: any PCR creator got any SPIFFE ID.
    let mut setup = Setup::spiffe();
    setup.pods = vec![];
    let (ctx, handle) = setup.context();
    let action = reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(PENDING_RECHECK));
    assert_no_more_requests(handle).await;
}

/// Answers the three live reads that confirm a denial: the pod (`pod`, 404 if `None`),
/// the Node and the ServiceAccount `sa`, in that order.
async fn answer_live_reads(handle: &mut MockHandle, pod: Option<Pod>, sa: (&str, &str)) {
    let (parts, _, send) = next(handle).await;
    assert_eq!(parts.method, Method::GET);
    assert_eq!(parts.uri.path(), "/api/v1/namespaces/t/pods/web-0");
    match pod {
        Some(p) => reply(send, StatusCode::OK, &serde_json::to_value(p).unwrap()),
        None => reply(
            send,
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        ),
    }
    let (parts, _, send) = next(handle).await;
    assert_eq!(parts.method, Method::GET);
    assert_eq!(parts.uri.path(), "/api/v1/nodes/node-1");
    let accept = parts.headers[http::header::ACCEPT]
        .to_str()
        .unwrap()
        .to_string();
    assert!(accept.contains("PartialObjectMetadata"), "{accept}");
    reply(
        send,
        StatusCode::OK,
        &meta_json::<Node>("node-1", None, "node-uid"),
    );
    let (parts, _, send) = next(handle).await;
    assert_eq!(parts.method, Method::GET);
    assert_eq!(
        parts.uri.path(),
        format!("/api/v1/namespaces/t/serviceaccounts/{}", sa.0)
    );
    reply(
        send,
        StatusCode::OK,
        &meta_json::<ServiceAccount>(sa.0, Some(NS), sa.1),
    );
}

#[tokio::test]
async fn another_pod_uid_in_the_cache_is_denied_only_once_a_live_read_confirms_it() {
    for signer in ["row-major.net/service-dns", "row-major.net/spiffe"] {
        let mut setup = Setup::service_dns();
        if signer.ends_with("spiffe") {
            setup.signer = spiffe();
        }
        setup.pods = vec![web_pod("another-uid")];
        setup.services = vec![service("web", &[("app", "web")])];
        let (ctx, mut handle) = setup.context();
        let task = tokio::spawn(reconcile(
            Arc::new(pcr(signer, Duration::from_secs(1))),
            ctx,
        ));
        answer_live_reads(&mut handle, Some(web_pod("another-uid")), ("web", "sa-uid")).await;
        expect_denial(handle, task, "PodUIDMismatch").await;
    }
}

#[tokio::test]
async fn a_lagging_cache_never_strands_a_pod_the_live_read_wins() {
    // The cache still holds the pod's predecessor (same name, another UID); the live
    // read finds the request's own pod: issued, not denied.
    let mut setup = Setup::spiffe();
    setup.pods = vec![web_pod("predecessor-uid")];
    let (ctx, mut handle) = setup.context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    answer_live_reads(&mut handle, Some(web_pod(POD_UID)), ("web", "sa-uid")).await;
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Issued");
    reply(send, StatusCode::OK, &body);
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_no_more_requests(handle).await;

    // And a pod gone by the time of the live read is pending, not denied.
    let mut setup = Setup::spiffe();
    setup.pods = vec![web_pod("predecessor-uid")];
    let (ctx, mut handle) = setup.context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    answer_live_reads(&mut handle, None, ("web", "sa-uid")).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(PENDING_RECHECK)
    );
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn a_terminating_pod_or_a_pod_without_the_volume_is_denied_after_confirmation() {
    let mut terminating = web_pod(POD_UID);
    terminating.metadata.deletion_timestamp = Some(k8s_time(now()));
    let mut no_volume = web_pod(POD_UID);
    if let Some(spec) = no_volume.spec.as_mut() {
        spec.volumes = None;
    }
    for (pod, reason) in [
        (terminating, "PodTerminating"),
        (no_volume, "NoPodCertificateSource"),
    ] {
        let mut setup = Setup::spiffe();
        setup.pods = vec![pod.clone()];
        let (ctx, mut handle) = setup.context();
        let task = tokio::spawn(reconcile(
            Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
            ctx,
        ));
        answer_live_reads(&mut handle, Some(pod), ("web", "sa-uid")).await;
        expect_denial(handle, task, reason).await;
    }
}

#[tokio::test]
async fn a_claimed_service_account_is_denied() {
    // A PCR creator claims ServiceAccount "admin" for the pod web-0 (which runs as web).
    let mut setup = Setup::spiffe();
    setup
        .service_accounts
        .push(meta("admin", Some(NS), "admin-uid"));
    let (ctx, mut handle) = setup.context();
    let mut request = pcr("row-major.net/spiffe", Duration::from_secs(1));
    request.spec.service_account_name = "admin".into();
    request.spec.service_account_uid = "admin-uid".into();
    let task = tokio::spawn(reconcile(Arc::new(request), ctx));
    answer_live_reads(&mut handle, Some(web_pod(POD_UID)), ("admin", "admin-uid")).await;
    expect_denial(handle, task, "ServiceAccountMismatch").await;
}

#[tokio::test]
async fn a_huge_denial_message_is_capped_so_the_status_write_succeeds() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let mut request = pcr("row-major.net/spiffe", Duration::from_secs(1));
    request.spec.unverified_user_annotations = Some(
        (0..500)
            .map(|i| (format!("example.com/{}-{i}", "k".repeat(250)), "v".into()))
            .collect(),
    );
    let task = tokio::spawn(reconcile(Arc::new(request), ctx));
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Denied");
    let message = body["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.len() <= crate::MAX_MESSAGE_BYTES,
        "{} bytes",
        message.len()
    );
    reply(send, StatusCode::OK, &body);
    let (_, _, send) = next(&mut handle).await;
    reply(send, StatusCode::CREATED, &json!({}));
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn missing_pool_is_a_retried_error_not_a_terminal_status() {
    let mut setup = Setup::spiffe();
    setup.pool = PoolState {
        last_error: Some("cannot read /nonexistent/pool: No such file or directory".into()),
        ..PoolState::empty("/nonexistent/pool")
    };
    let (ctx, handle) = setup.context();
    let request = Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1)));
    let error = reconcile(request.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.step(), "ca_pool");
    assert!(error.to_string().contains("/nonexistent/pool"), "{error}");
    assert_eq!(
        error_policy(request, &error, ctx),
        Action::requeue(SIGNER_ERROR_RETRY)
    );
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn expired_ca_is_a_retried_error_not_a_terminal_status() {
    let mut setup = Setup::spiffe();
    let old = generate_ca(
        "old",
        KeyType::Ed25519,
        now() - Duration::from_secs(10 * 86_400),
        Duration::from_secs(86_400),
    )
    .unwrap();
    setup.pool = PoolState::fixed("/pool", CaPool::single(old));
    let (ctx, handle) = setup.context();
    let error = reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(error.step(), "issue");
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn server_error_on_the_status_write_is_a_write_status_error() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    let (_, _, send) = next(&mut handle).await;
    reply(
        send,
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd down"}),
    );
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.step(), "write_status");
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn trust_bundle_is_server_side_applied_with_name_labels_and_signer() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let client = ctx.client.clone();
    drop(ctx);
    let pool = pool();
    let expected_pem = pool.trust_bundle_pem();
    let task =
        tokio::spawn(
            async move { trust_bundles::apply(&client, &ctb_api(), &spiffe(), &pool).await },
        );
    let (parts, body, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::PATCH);
    assert_eq!(
        parts.uri.path(),
        "/apis/certificates.k8s.io/v1beta1/clustertrustbundles/row-major.net:spiffe:primary-bundle"
    );
    let query = parts.uri.query().unwrap();
    assert!(
        query.contains("fieldManager=podtls-signer") && query.contains("force=true"),
        "{query}"
    );
    assert_eq!(
        parts.headers[http::header::CONTENT_TYPE],
        "application/apply-patch+yaml"
    );
    assert_eq!(
        body,
        json!({
            "apiVersion": "certificates.k8s.io/v1beta1",
            "kind": "ClusterTrustBundle",
            "metadata": {
                "name": "row-major.net:spiffe:primary-bundle",
                "labels": {
                    "spiffe.row-major.net/canarying": "live",
                    "spiffe.row-major.net/trust-domain": "cluster.local",
                    "k8s.spiffe.io/canarying": "live",
                    "k8s.spiffe.io/workload-trust-domain": "cluster.local",
                    "k8s.spiffe.io/peer-trust-domain": "cluster.local",
                },
            },
            "spec": {"signerName": "row-major.net/spiffe", "trustBundle": expected_pem},
        })
    );
    reply(send, StatusCode::OK, &body);
    task.await.unwrap().unwrap();
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn discovery_falls_back_to_v1beta1_when_v1_has_no_podcertificaterequests() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let task = tokio::spawn(async move { discover(&client).await });
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.uri.path(), "/apis/certificates.k8s.io/v1");
    reply(
        send,
        StatusCode::OK,
        &serde_json::to_value(APIResourceList {
            group_version: "certificates.k8s.io/v1".into(),
            resources: vec![APIResource {
                name: "certificatesigningrequests".into(),
                ..Default::default()
            }],
        })
        .unwrap(),
    );
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.uri.path(), "/apis/certificates.k8s.io/v1beta1");
    let names = [
        "podcertificaterequests",
        "podcertificaterequests/status",
        "clustertrustbundles",
    ];
    reply(
        send,
        StatusCode::OK,
        &serde_json::to_value(APIResourceList {
            group_version: "certificates.k8s.io/v1beta1".into(),
            resources: names
                .iter()
                .map(|n| APIResource {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
        })
        .unwrap(),
    );
    let apis = task.await.unwrap().unwrap();
    assert_eq!(apis.pcr, pcr_api());
    assert_eq!(apis.ctb, ctb_api());
    assert_no_more_requests(handle).await;
}

#[test]
fn invalid_trust_domain_is_rejected_before_anything_runs() {
    for bad in ["spiffe://cluster.local", "Cluster.Local", "", "a/b"] {
        assert!(parse_trust_domain(bad).is_err(), "{bad:?} accepted");
    }
}

fn listed_bundle(name: &str, signer: &str, manager: &str) -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1beta1",
        "kind": "ClusterTrustBundle",
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "resourceVersion": "41",
            "managedFields": [{"manager": manager, "operation": "Apply", "apiVersion": "certificates.k8s.io/v1beta1"}],
        },
        "spec": {"signerName": signer, "trustBundle": ""},
    })
}

#[tokio::test]
async fn trust_bundle_of_a_disabled_signer_is_deleted_with_preconditions_and_others_kept() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let client = ctx.client.clone();
    drop(ctx);
    let task =
        tokio::spawn(async move { collect_trust_bundles(&client, &ctb_api(), &[spiffe()]).await });
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::GET);
    assert_eq!(
        parts.uri.path(),
        "/apis/certificates.k8s.io/v1beta1/clustertrustbundles"
    );
    reply(
        send,
        StatusCode::OK,
        &json!({
            "apiVersion": "certificates.k8s.io/v1beta1",
            "kind": "ClusterTrustBundleList",
            "metadata": {"resourceVersion": "50"},
            "items": [
                listed_bundle("row-major.net:spiffe:primary-bundle", "row-major.net/spiffe", FIELD_MANAGER),
                listed_bundle("row-major.net:service-dns:primary-bundle", "row-major.net/service-dns", FIELD_MANAGER),
                listed_bundle("example.com:other:primary-bundle", "example.com/other", "someone-else"),
            ],
        }),
    );
    let (parts, body, send) = next(&mut handle).await;
    assert_eq!(parts.method, Method::DELETE);
    assert_eq!(
        parts.uri.path(),
        "/apis/certificates.k8s.io/v1beta1/clustertrustbundles/row-major.net:service-dns:primary-bundle"
    );
    assert_eq!(
        body["preconditions"],
        json!({"uid": "uid-row-major.net:service-dns:primary-bundle", "resourceVersion": "41"}),
        "{body}"
    );
    reply(
        send,
        StatusCode::OK,
        &listed_bundle(
            "row-major.net:service-dns:primary-bundle",
            "row-major.net/service-dns",
            FIELD_MANAGER,
        ),
    );
    let deleted = task.await.unwrap().unwrap();
    assert_eq!(deleted, ["row-major.net:service-dns:primary-bundle"]);
    assert_no_more_requests(handle).await;
}

#[path = "tests_trust_domains.rs"]
mod trust_domains;

#[cfg(test)]
#[path = "tests_csr.rs"]
mod csr;
