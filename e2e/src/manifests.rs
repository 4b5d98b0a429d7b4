//! The project's manifests, applied for real: YAML documents parsed into
//! dynamic objects, server-side applied like `kubectl apply --server-side`, and
//! the Deployments' pod templates turned into Pods bound to a node (the test
//! cluster runs no scheduler and no ReplicaSet controller).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

/// The field manager of everything the suite applies.
pub const FIELD_MANAGER: &str = "podtls-e2e";

/// The repository's `example-manifests/` directory.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-manifests")
}

/// The documents of a multi-document YAML file, as JSON values (empty documents
/// dropped).
pub fn load(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The documents of every `*.yaml` file in `dir`, files in lexical order (as
/// `kubectl apply -f DIR` takes them).
pub fn load_dir(dir: &Path) -> Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        docs.extend(load(&f)?);
    }
    Ok(docs)
}

/// The documents of multi-document YAML text. Like kubectl (YAML 1.1), a
/// leading zero makes an octal number (`defaultMode: 0444`).
pub fn parse(text: &str) -> Result<Vec<Value>> {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `kind` and `metadata.name` of a document, for messages.
pub fn describe(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Server-side applies every document (forcing conflicts, as the only manager).
pub async fn apply_all(client: &kube::Client, docs: &[Value]) -> Result<()> {
    for doc in docs {
        apply(client, doc)
            .await
            .with_context(|| format!("applying {}", describe(doc)))?;
    }
    Ok(())
}

/// Server-side applies one document.
pub async fn apply(client: &kube::Client, doc: &Value) -> Result<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().context("no apiVersion")?;
    let kind = doc["kind"].as_str().context("no kind")?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let name = doc["metadata"]["name"]
        .as_str()
        .context("no metadata.name")?;
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Namespaced => {
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(doc)).await?)
}

/// The pod template of the Deployment `name` among `docs`.
pub fn pod_template<'a>(docs: &'a [Value], name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .map(|d| &d["spec"]["template"])
        .with_context(|| format!("no Deployment {name:?} in the manifests"))
}

/// Creates a Pod from a Deployment's pod template, bound to `node`, named `name`
/// in `namespace`. `edit` may change the pod before it is created.
pub async fn create_pod_from_template(
    client: &kube::Client,
    template: &Value,
    namespace: &str,
    name: &str,
    node: &str,
    edit: impl FnOnce(&mut Value),
) -> Result<Pod> {
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": template["metadata"]["labels"].clone(),
        },
        "spec": template["spec"].clone(),
    });
    pod["spec"]["nodeName"] = Value::from(node);
    edit(&mut pod);
    let pod: Pod = serde_json::from_value(pod).context("the pod template is not a PodSpec")?;
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {namespace}/{name} on {node}"))
}

/// The container `container` of a pod template: its `command` (the binary's
/// path first) and `env`, for running it as a local process.
pub fn container_command(template: &Value, container: &str) -> Result<Vec<String>> {
    let Some(containers) = template["spec"]["containers"].as_array() else {
        bail!("pod template has no containers");
    };
    let c = containers
        .iter()
        .find(|c| c["name"] == container)
        .with_context(|| format!("no container {container:?}"))?;
    let Some(command) = c["command"].as_array() else {
        bail!("container {container:?} has no command");
    };
    command
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .context("non-string command item")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_manifest_parses_into_named_objects() {
        let mut files = 0;
        for entry in std::fs::read_dir(manifests_dir()).unwrap() {
            let path = entry.unwrap().path();
            let docs = if path.is_dir() {
                std::fs::read_dir(&path)
                    .unwrap()
                    .flat_map(|e| load(&e.unwrap().path()).unwrap())
                    .collect()
            } else {
                load(&path).unwrap()
            };
            assert!(!docs.is_empty(), "{} has no documents", path.display());
            for d in &docs {
                assert!(d["kind"].is_string(), "{}: {d}", path.display());
                assert!(d["metadata"]["name"].is_string(), "{}: {d}", path.display());
            }
            files += 1;
        }
        assert!(files >= 4);
    }

    /// Every field of every example Deployment's pod spec is one that
    /// k8s-openapi knows: a misspelt field (say `credentialBundlePath` or
    /// `optional` of a projected source) would be dropped by the API server
    /// without a word, and is caught here by a lossless round trip.
    #[test]
    fn example_pod_specs_use_only_known_field_names() {
        let mut files = vec![manifests_dir().join("federation/federated-spiffe.yaml")];
        for entry in std::fs::read_dir(manifests_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
        let mut checked = 0;
        for file in files {
            for doc in load(&file).unwrap() {
                if doc["kind"] != "Deployment" {
                    continue;
                }
                let spec = &doc["spec"]["template"]["spec"];
                let typed: k8s_openapi::api::core::v1::PodSpec =
                    serde_json::from_value(spec.clone()).unwrap();
                let back = serde_json::to_value(&typed).unwrap();
                assert_eq!(&back, spec, "{}: {}", file.display(), describe(&doc));
                checked += 1;
            }
        }
        assert!(checked >= 8, "{checked} Deployments checked");
    }

    #[test]
    fn octal_modes_parse_as_kubectl_reads_them() {
        // kubectl reads `defaultMode: 0444` as YAML 1.1 octal (292).
        let docs = load(&manifests_dir().join("spiffe-mtls.yaml")).unwrap();
        let t = pod_template(&docs, "server").unwrap();
        assert_eq!(t["spec"]["volumes"][0]["projected"]["defaultMode"], 0o444);
    }
}
