//! A fake Registry that behaves as the mesh's guides describe it: a service
//! registers with `POST /register` and gets back `{"token", "service_id"}`,
//! the token an RS256 one naming the service (`sub`, `service_id`,
//! `service_name`, no `permissions`), and the directory (`GET /services`)
//! lists it from then on. Its key is the test key in `tests/fixtures`.

use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const REGISTRY_PRIVATE: &str = include_str!("../fixtures/registry/registry-private.pem");
pub const REGISTRY_PUBLIC: &str = include_str!("../fixtures/registry/registry-public.pem");
pub const OTHER_PRIVATE: &str = include_str!("../fixtures/registry/other-private.pem");

/// The Registry's ids for services start here, far from droplet ids, so
/// that a test cannot pass by mistaking one for the other.
pub const FIRST_SERVICE_ID: i64 = 7001;

/// A running fake Registry.
#[derive(Debug)]
pub struct FakeRegistry {
    pub server: MockServer,
    directory: Arc<Mutex<Vec<Value>>>,
}

impl FakeRegistry {
    /// A Registry whose directory is empty until services register.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let directory = Arc::new(Mutex::new(Vec::new()));
        Mock::given(method("GET"))
            .and(path("/auth/public-key"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "public_key": REGISTRY_PUBLIC })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/register"))
            .respond_with(Registering(directory.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/services"))
            .respond_with(Listing(directory.clone()))
            .mount(&server)
            .await;
        FakeRegistry { server, directory }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The directory as `GET /services` answers it now.
    pub fn services(&self) -> Vec<Value> {
        self.directory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers a service as a droplet of the mesh would; returns its
    /// token and service id.
    pub async fn register(&self, registration: Value) -> (String, i64) {
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/register", self.uri()))
            .json(&registration)
            .send()
            .await
            .expect("register with the fake Registry")
            .json()
            .await
            .expect("its JSON");
        let token = reply["token"].as_str().expect("a token").to_owned();
        (token, reply["service_id"].as_i64().expect("a service id"))
    }

    /// How many times the directory was asked for.
    pub async fn directory_reads(&self) -> usize {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests.iter().filter(|r| r.url.path() == "/services").count()
    }
}

/// A token the Registry signs for a service, as it issues them: it names
/// the service and carries no `permissions`.
pub fn service_token(service_id: i64, name: &str) -> String {
    sign(
        REGISTRY_PRIVATE,
        json!({ "sub": name, "service_id": service_id, "service_name": name }),
    )
}

/// `claims` with `iat` and `exp` (ten minutes), signed RS256 with `key`.
pub fn sign(key: &str, mut claims: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 600);
    let key = EncodingKey::from_rsa_pem(key.as_bytes()).expect("test key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
}

/// `POST /register`: a new service gets the next id; one registering again
/// (same `droplet_id`) keeps its own and is described anew.
struct Registering(Arc<Mutex<Vec<Value>>>);

impl Respond for Registering {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(422).set_body_json(json!({ "detail": "not JSON" }));
        };
        let (Some(name), Some(droplet_id)) = (body["name"].as_str(), body["droplet_id"].as_i64()) else {
            return ResponseTemplate::new(422)
                .set_body_json(json!({ "detail": "name and droplet_id needed" }));
        };
        let mut directory = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let known = directory.iter().position(|s| s["droplet_id"] == droplet_id);
        let service_id = match known {
            Some(at) => directory.remove(at)["service_id"]
                .as_i64()
                .unwrap_or(FIRST_SERVICE_ID),
            None => FIRST_SERVICE_ID + directory.len() as i64,
        };
        directory.push(json!({
            "service_id": service_id,
            "droplet_id": droplet_id,
            "name": name,
            "host": "127.0.0.1",
            "port": body["port"],
            "health_endpoint": body["health_endpoint"],
            "capabilities": body["capabilities"],
        }));
        ResponseTemplate::new(201).set_body_json(json!({
            "token": service_token(service_id, name),
            "service_id": service_id,
        }))
    }
}

/// `GET /services`: every service registered so far.
struct Listing(Arc<Mutex<Vec<Value>>>);

impl Respond for Listing {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let directory = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ResponseTemplate::new(200).set_body_json(json!({ "services": *directory }))
    }
}
