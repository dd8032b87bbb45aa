//! What the tests that run the `orchestrator` binary share.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use orchestrator_domain::Permission;
use orchestrator_server::auth::{JwtKeys, TokenRequest};

/// A ten-minute token signed with `secret`.
pub fn token(secret: &str, subject: &str, permission: Permission, droplet: Option<i64>) -> String {
    JwtKeys::hs256(secret.as_bytes())
        .issue(&TokenRequest {
            subject: subject.into(),
            permissions: vec![permission],
            droplet_id: droplet,
            steward: None,
            ttl: Duration::from_secs(600),
        })
        .expect("sign")
}

/// The lines a child prints on its standard output, as they come.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}
