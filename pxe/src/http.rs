//! HTTP boot: an axum `Router` with the generated iPXE scripts and every regular file of the
//! artifact root (kernel, initrd, UKI, iPXE binaries) with correct lengths and single-range
//! requests. A coordinator can mount it on its own listener; `cortex pxe serve` runs it alone.
//!
//! Routes (GET and HEAD):
//! - `/boot.ipxe` — without `arch=`, the dispatcher (chains `boot-${platform}.ipxe`); with
//!   `arch=pcbios|bios|efi|uefi`, that firmware's script directly. `mac=` is optional, checked
//!   and logged.
//! - `/boot-pcbios.ipxe`, `/boot-efi.ipxe`, `/custom.ipxe` (netboot.xyz's custom URL).
//! - anything else: a file of the root, via tower-http's `ServeFile` (Range, 416, HEAD,
//!   Last-Modified) after [`Root::resolve`](crate::root::Root::resolve) confined it.
//!
//! Unknown, refused and non-regular files are all a plain-text 404.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::script::{Flow, ScriptError};
use crate::Boot;

/// The boot router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so
/// refusals are logged with the peer address (without it they say `unknown`).
pub fn router(boot: Boot) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_script))
        .route("/boot-pcbios.ipxe", get(bios_script))
        .route("/boot-efi.ipxe", get(efi_script))
        .route("/custom.ipxe", get(custom_script))
        .fallback(artifact)
        .with_state(boot)
}

#[derive(Debug, Deserialize)]
struct BootQuery {
    arch: Option<String>,
    mac: Option<String>,
}

async fn boot_script(State(boot): State<Boot>, Query(q): Query<BootQuery>) -> Response {
    if let Some(mac) = &q.mac {
        if !is_mac(mac) {
            return plain(
                StatusCode::BAD_REQUEST,
                "mac= must be six hex octets separated by - or :\n",
            );
        }
        tracing::info!(%mac, arch = q.arch.as_deref().unwrap_or("-"), "boot script requested");
    }
    let flow = match q.arch.as_deref() {
        None | Some("") => Flow::Dispatch,
        Some(a) => match Flow::from_arch(a) {
            Some(f) => f,
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "arch= must be pcbios, bios, efi or uefi\n",
                )
            }
        },
    };
    script(&boot, flow)
}

async fn bios_script(State(boot): State<Boot>) -> Response {
    script(&boot, Flow::Bios)
}

async fn efi_script(State(boot): State<Boot>) -> Response {
    script(&boot, Flow::Uefi)
}

async fn custom_script(State(boot): State<Boot>) -> Response {
    script(&boot, Flow::Custom)
}

fn script(boot: &Boot, flow: Flow) -> Response {
    match boot.script(flow) {
        Ok(s) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s).into_response(),
        Err(e @ ScriptError::Missing(_)) => {
            tracing::warn!(?flow, error = %e, "cannot generate boot script");
            plain(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n"))
        }
        Err(e) => {
            tracing::error!(?flow, error = %e, "cannot generate boot script");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot generate the boot script\n",
            )
        }
    }
}

async fn artifact(State(boot): State<Boot>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET and HEAD only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    let Some(path) = percent_decode(req.uri().path()) else {
        tracing::warn!(%peer, requested = req.uri().path(), "request refused: bad percent-encoding");
        return not_found();
    };
    let resolved = match boot.root().resolve(&path, &peer) {
        Ok(r) => r,
        Err(_) => return not_found(),
    };
    match ServeFile::new(&resolved.path).oneshot(req).await {
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => not_found(),
        Ok(resp) => resp.map(Body::new),
        Err(never) => match never {},
    }
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

/// `52-54-00-12-34-56` or `52:54:00:12:34:56` (iPXE's `${mac:hexhyp}` / `${mac}`).
fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(['-', ':']).collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8. The
/// decoded path goes through [`Root::resolve`](crate::root::Root::resolve), so `%2e%2e` is a
/// `..` and refused like one.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2e%2E/b").as_deref(), Some("/a../b"));
        assert_eq!(percent_decode("/%2F").as_deref(), Some("//"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%2"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }

    #[test]
    fn mac_syntax() {
        assert!(is_mac("52-54-00-12-34-56"));
        assert!(is_mac("52:54:00:AB:cd:ef"));
        assert!(!is_mac("52-54-00-12-34"));
        assert!(!is_mac("52-54-00-12-34-5g"));
        assert!(!is_mac("52-54-00-12-34-56\n"));
    }
}
