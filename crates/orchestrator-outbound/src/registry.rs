//! `HttpRegistryClient`: the Registry's HTTP API as the integration guide
//! describes it.
//!
//! - `POST {url}/register` with the service's description; 200 or 201.
//! - `GET {url}/auth/public-key`: `{"public_key": "<PEM>", "kid": "…"}`
//!   (`kid` optional).
//! - `GET {url}/services`: the directory, as an array or as
//!   `{"services": [...]}`; each entry has `droplet_id`, `name`, `endpoint`
//!   (or `host` and `port`), `capabilities` and, optionally, `steward` and
//!   the Registry's own id for the service, `service_id` (or `id` beside
//!   `droplet_id`). An entry with `id` and no `droplet_id` is read as an
//!   older directory writes it: `id` is then the droplet's id. Ids may be
//!   numbers or strings of digits. Entries that cannot be read are skipped,
//!   not fatal.

use std::time::Duration;

use async_trait::async_trait;
use orchestrator_ports::{
    DirectoryEntry, RegisteredService, RegistryClient, RegistryError, ServiceRegistration, SigningKey,
};
use serde_json::{Value, json};

/// How long one call to the Registry may take.
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct HttpRegistryClient {
    client: reqwest::Client,
    base: String,
}

impl HttpRegistryClient {
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(REGISTRY_TIMEOUT)
            .timeout(REGISTRY_TIMEOUT)
            .build()?;
        Ok(HttpRegistryClient {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    async fn get_json(&self, path: &str) -> Result<Value, RegistryError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        read_json(&url, response).await
    }
}

/// The service's description, as `POST /register` takes it.
fn registration_body(me: &ServiceRegistration) -> Value {
    json!({
        "name": me.name,
        "droplet_id": me.droplet_id,
        "endpoint": me.endpoint,
        "port": me.port,
        "health_endpoint": me.health_endpoint,
        "capabilities": me.capabilities,
        "version": me.version,
        "udc_compliant": me.udc_compliant,
    })
}

fn unreachable(url: &str, err: &reqwest::Error) -> RegistryError {
    RegistryError(format!("could not reach the Registry at {url}: {err}"))
}

async fn read_json(url: &str, response: reqwest::Response) -> Result<Value, RegistryError> {
    let status = response.status();
    if !status.is_success() {
        return Err(RegistryError(format!("the Registry answered {status} to {url}")));
    }
    response
        .json()
        .await
        .map_err(|e| RegistryError(format!("the Registry's answer to {url} is not JSON: {e}")))
}

#[async_trait]
impl RegistryClient for HttpRegistryClient {
    async fn register(&self, me: &ServiceRegistration) -> Result<RegisteredService, RegistryError> {
        let url = format!("{}/register", self.base);
        let response = self
            .client
            .post(&url)
            .json(&registration_body(me))
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let body = read_json(&url, response).await?;
        Ok(RegisteredService {
            service_id: body["service_id"].as_i64().unwrap_or(me.droplet_id),
        })
    }

    async fn signing_key(&self) -> Result<SigningKey, RegistryError> {
        let body = self.get_json("/auth/public-key").await?;
        let public_key_pem = body["public_key"]
            .as_str()
            .filter(|pem| pem.contains("PUBLIC KEY"))
            .ok_or_else(|| RegistryError("the Registry's public key is missing or not PEM".into()))?
            .to_owned();
        Ok(SigningKey {
            public_key_pem,
            kid: body["kid"].as_str().map(str::to_owned),
        })
    }

    async fn directory(&self) -> Result<Vec<DirectoryEntry>, RegistryError> {
        let body = self.get_json("/services").await?;
        let entries = match &body {
            Value::Array(entries) => entries,
            other => other["services"]
                .as_array()
                .ok_or_else(|| RegistryError("the Registry's directory is not a list of services".into()))?,
        };
        Ok(entries.iter().filter_map(directory_entry).collect())
    }
}

/// An id written as a number or as a string of digits.
fn id_of(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

fn directory_entry(value: &Value) -> Option<DirectoryEntry> {
    let (droplet_id, service_id) = match id_of(&value["droplet_id"]) {
        Some(droplet_id) => (
            droplet_id,
            id_of(&value["service_id"]).or_else(|| id_of(&value["id"])),
        ),
        None => (id_of(&value["id"])?, id_of(&value["service_id"])),
    };
    let endpoint = match value["endpoint"].as_str() {
        Some(endpoint) => endpoint.to_owned(),
        None => format!("http://{}:{}", value["host"].as_str()?, value["port"].as_u64()?),
    };
    Some(DirectoryEntry {
        droplet_id,
        service_id,
        name: value["name"].as_str()?.to_owned(),
        endpoint,
        capabilities: value["capabilities"]
            .as_array()
            .map(|all| all.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        steward: value["steward"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn directory_entries_are_read_in_either_form() {
        let with_endpoint = json!({"droplet_id": 14, "name": "verifier", "endpoint": "http://v:8000", "capabilities": ["verify"]});
        let with_host = json!({"id": 15, "name": "scanner", "host": "scan", "port": 8015, "steward": "ops"});
        assert_eq!(
            directory_entry(&with_endpoint),
            Some(DirectoryEntry {
                droplet_id: 14,
                service_id: None,
                name: "verifier".into(),
                endpoint: "http://v:8000".into(),
                capabilities: vec!["verify".into()],
                steward: None,
            })
        );
        let scanner = directory_entry(&with_host).expect("read");
        assert_eq!(
            (scanner.endpoint.as_str(), scanner.steward.as_deref()),
            ("http://scan:8015", Some("ops"))
        );
        assert_eq!(scanner.service_id, None, "a lone `id` is the droplet's");
        assert_eq!(directory_entry(&json!({"name": "no id"})), None);
    }

    #[test]
    fn the_registrys_service_id_is_kept_beside_the_droplet_id() {
        let entry = |value: Value| directory_entry(&value).map(|e| (e.droplet_id, e.service_id));
        let common = |mut v: Value| {
            v["name"] = json!("py");
            v["endpoint"] = json!("http://py:8041");
            v
        };
        assert_eq!(
            entry(common(json!({"droplet_id": 41, "service_id": 7001}))),
            Some((41, Some(7001)))
        );
        assert_eq!(
            entry(common(json!({"droplet_id": 41, "id": 7001}))),
            Some((41, Some(7001)))
        );
        assert_eq!(
            entry(common(json!({"droplet_id": "41", "service_id": "7001"}))),
            Some((41, Some(7001)))
        );
        assert_eq!(
            entry(common(json!({"id": 41, "service_id": 7001}))),
            Some((41, Some(7001)))
        );
    }
}
