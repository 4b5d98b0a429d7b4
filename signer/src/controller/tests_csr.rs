//! The CertificateSigningRequest reconciler against a mocked API server: the writes it
//! makes, in order, with their preconditions.

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::prelude::FromDer as _;

use super::*;
use crate::csr_policy::{APPROVED_REASON, POD_NAME_EXTRA, POD_UID_EXTRA};

const CSR: &str = "podtls-t-web-0-x7k2p";
const CSR_PATH: &str =
    "/apis/certificates.k8s.io/v1/certificatesigningrequests/podtls-t-web-0-x7k2p";

/// What the agent of pod t/web-0 files, as kube-apiserver stores it.
fn agent_csr(username: &str, pod_uid: &str) -> CertificateSigningRequest {
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.stub_csr());
    let pem =
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n");
    serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": CSR, "resourceVersion": "3",
                     "creationTimestamp": "2030-03-17T17:46:39Z"},
        "spec": {
            "signerName": "row-major.net/spiffe",
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "usages": ["digital signature", "server auth", "client auth"],
            "expirationSeconds": 86400,
            "username": username,
            "extra": {POD_NAME_EXTRA: ["web-0"], POD_UID_EXTRA: [pod_uid]},
        }
    }))
    .unwrap()
}

fn assert_put(parts: &http::request::Parts, path: &str, body: &Value, rv: &str) {
    assert_eq!(parts.method, Method::PUT);
    assert_eq!(parts.uri.path(), path);
    assert_eq!(body["metadata"]["resourceVersion"], rv, "the precondition");
}

#[tokio::test]
async fn approves_through_approval_then_writes_the_chain_through_status() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let csr = agent_csr("system:serviceaccount:t:web", POD_UID);
    let task = tokio::spawn(reconcile_csr(Arc::new(csr.clone()), ctx));

    let (parts, body, send) = next(&mut handle).await;
    assert_put(&parts, &format!("{CSR_PATH}/approval"), &body, "3");
    let conditions = body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{body}");
    assert_eq!(conditions[0]["type"], "Approved");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[0]["reason"], APPROVED_REASON);
    let mut approved = body.clone();
    approved["metadata"]["resourceVersion"] = json!("4");
    reply(send, StatusCode::OK, &approved);

    let (parts, body, send) = next(&mut handle).await;
    assert_put(&parts, &format!("{CSR_PATH}/status"), &body, "4");
    assert_eq!(body["status"]["conditions"][0]["type"], "Approved", "kept");
    let chain = base64::engine::general_purpose::STANDARD
        .decode(body["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let chain = String::from_utf8(chain).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        1,
        "leaf, no root"
    );
    let der = rustls_pki_types::CertificateDer::from_pem_slice(chain.as_bytes()).unwrap();
    let (_, leaf) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names[0].to_string(),
        "URI(spiffe://cluster.local/ns/t/sa/web)"
    );
    reply(send, StatusCode::OK, &body);

    assert!(task.await.unwrap().unwrap() == Action::await_change());
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn a_human_is_denied_through_approval_without_reading_anything() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let csr = agent_csr("alice@example.com", POD_UID);
    let task = tokio::spawn(reconcile_csr(Arc::new(csr), ctx));
    let (parts, body, send) = next(&mut handle).await;
    assert_put(&parts, &format!("{CSR_PATH}/approval"), &body, "3");
    let condition = &body["status"]["conditions"][0];
    assert_eq!(condition["type"], "Denied");
    assert_eq!(condition["reason"], "RequesterNotServiceAccount");
    assert!(condition["message"]
        .as_str()
        .unwrap()
        .contains("alice@example.com"));
    reply(send, StatusCode::OK, &body);
    task.await.unwrap().unwrap();
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn a_token_of_a_pod_that_is_gone_is_denied_only_once_a_live_read_confirms_it() {
    // The caches have the new web-0; the token is the old one's. The live read agrees.
    let (ctx, mut handle) = Setup::spiffe().context();
    let csr = agent_csr("system:serviceaccount:t:web", "old-uid");
    let task = tokio::spawn(reconcile_csr(Arc::new(csr), ctx));
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.uri.path(), "/api/v1/namespaces/t/pods/web-0");
    reply(
        send,
        StatusCode::OK,
        &serde_json::to_value(web_pod(POD_UID)).unwrap(),
    );
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.uri.path(), "/api/v1/nodes/node-1");
    reply(
        send,
        StatusCode::OK,
        &meta_json::<Node>("node-1", None, "node-uid"),
    );
    let (parts, _, send) = next(&mut handle).await;
    assert_eq!(parts.uri.path(), "/api/v1/namespaces/t/serviceaccounts/web");
    reply(
        send,
        StatusCode::OK,
        &meta_json::<ServiceAccount>("web", Some(NS), "sa-uid"),
    );
    let (parts, body, send) = next(&mut handle).await;
    assert_put(&parts, &format!("{CSR_PATH}/approval"), &body, "3");
    assert_eq!(body["status"]["conditions"][0]["reason"], "PodUIDMismatch");
    reply(send, StatusCode::OK, &body);
    task.await.unwrap().unwrap();
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn a_conflicting_approval_writes_no_certificate() {
    let (ctx, mut handle) = Setup::spiffe().context();
    let csr = agent_csr("system:serviceaccount:t:web", POD_UID);
    let task = tokio::spawn(reconcile_csr(Arc::new(csr), ctx));
    let (parts, body, send) = next(&mut handle).await;
    assert_put(&parts, &format!("{CSR_PATH}/approval"), &body, "3");
    reply(send, StatusCode::CONFLICT, &conflict());
    assert!(task.await.unwrap().unwrap() == Action::requeue(CONFLICT_RETRY));
    assert_no_more_requests(handle).await;
}

#[tokio::test]
async fn a_csr_approved_by_someone_else_or_issued_is_left_alone() {
    for status in [
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]}),
        json!({"conditions": [{"type": "Approved", "status": "True", "reason": APPROVED_REASON}],
               "certificate": base64::engine::general_purpose::STANDARD.encode("x")}),
    ] {
        let (ctx, handle) = Setup::spiffe().context();
        let mut csr = agent_csr("system:serviceaccount:t:web", POD_UID);
        csr.status = Some(serde_json::from_value(status).unwrap());
        let action = reconcile_csr(Arc::new(csr), ctx).await.unwrap();
        assert!(action == Action::await_change());
        assert_no_more_requests(handle).await;
    }
}
