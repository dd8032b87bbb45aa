//! The dashboard's stylesheet and script, ours and built into the binary.
//! Each is served under a name carrying a hash of its contents, so that it
//! can be cached for a year and a new build is fetched at once.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

struct Asset {
    stem: &'static str,
    extension: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const STYLE: Asset = Asset {
    stem: "dashboard",
    extension: "css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("../../assets/dashboard.css"),
};

const SCRIPT: Asset = Asset {
    stem: "dashboard",
    extension: "js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../../assets/dashboard.js"),
};

impl Asset {
    fn name(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.body.hash(&mut hasher);
        format!("{}-{:016x}.{}", self.stem, hasher.finish(), self.extension)
    }
}

fn names() -> &'static [(String, &'static Asset); 2] {
    static NAMES: OnceLock<[(String, &'static Asset); 2]> = OnceLock::new();
    NAMES.get_or_init(|| [(STYLE.name(), &STYLE), (SCRIPT.name(), &SCRIPT)])
}

/// The path of the stylesheet.
pub fn style_path() -> String {
    format!("/ui/assets/{}", names()[0].0)
}

/// The path of the script.
pub fn script_path() -> String {
    format!("/ui/assets/{}", names()[1].0)
}

/// `GET /ui/assets/{name}`.
pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match names().iter().find(|(known, _)| *known == *name) {
        Some((_, asset)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(asset.body),
        None => HttpResponse::NotFound()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body("no such asset"),
    }
}
