//! The classic storage pipeline: an image uploaded to the `uploads` bucket gets a thumbnail.
//!
//! kumo invokes this function asynchronously for each object written to `uploads`
//! (`on_object = { bucket = "uploads" }` in kumo.toml), with a CloudEvent whose `data` is the
//! object's metadata. The function reads the image (`kumo:objects`, granted by
//! `objects = ["uploads", "thumbnails"]`), scales it to fit 128×128 keeping its aspect ratio,
//! and writes it as PNG to `thumbnails/{key}.png`.
//!
//! A retry cannot help an object that is not an image (or is gone by now): such an event ends
//! with a 4xx and a log line, which kumo counts as handled. A failing store answers 5xx, and
//! kumo retries.

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/kumo-runtime/wit/objects",
        world: "kumo:objects/imports",
        generate_all,
    });
}

use bindings::kumo::objects::objects;
use std::io::Cursor;
use wstd::http::{Body, Error, Request, Response, StatusCode};

/// The box a thumbnail fits in, in pixels.
const THUMBNAIL_SIZE: u32 = 128;
const THUMBNAILS: &str = "thumbnails";

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let event: serde_json::Value = match request.into_body().json().await {
        Ok(event) => event,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("not a CloudEvent: {e}")),
    };
    let field = |name: &str| event["data"][name].as_str().unwrap_or("").to_string();
    let (bucket, key) = (field("bucket"), field("key"));
    if key.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "the event names no object");
    }

    let original = match objects::get(&bucket, &key) {
        Ok(Some(original)) => original,
        Ok(None) => return reply(StatusCode::NOT_FOUND, format!("{bucket}/{key} is gone")),
        Err(e) => return store_failed("get", e),
    };
    let image = match image::load_from_memory(&original.data) {
        Ok(image) => image,
        Err(e) => {
            let why = format!("{bucket}/{key} is not an image kumo can read: {e}");
            eprintln!("{why}");
            return reply(StatusCode::UNPROCESSABLE_ENTITY, why);
        }
    };
    let thumbnail = image.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE);
    let mut png = Vec::new();
    if let Err(e) = thumbnail.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png) {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}"));
    }
    let target = format!("{key}.png");
    if let Err(e) = objects::put(THUMBNAILS, &target, "image/png", &png) {
        return store_failed("put", e);
    }
    let done = format!(
        "{bucket}/{key} ({}×{}) → {THUMBNAILS}/{target} ({}×{}, {} bytes)",
        image.width(),
        image.height(),
        thumbnail.width(),
        thumbnail.height(),
        png.len()
    );
    println!("{done}");
    reply(StatusCode::OK, done)
}

fn store_failed(what: &str, e: objects::Error) -> Result<Response<Body>, Error> {
    let status = match e {
        objects::Error::AccessDenied | objects::Error::InvalidName(_) => StatusCode::FORBIDDEN,
        objects::Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        objects::Error::Other(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let why = format!("{what}: {e:?}");
    eprintln!("{why}");
    reply(status, why)
}

fn reply(status: StatusCode, text: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .body(Body::from(text.into()))?)
}
