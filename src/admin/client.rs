//! The admin API's client side, for `slotgate migrate`: one HTTP/1.1 request to a running
//! proxy's admin listener.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

/// Send `method path` to the admin listener at `addr` (`HOST:PORT`) and return the body of a
/// 2xx answer, or the status and body of any other, or why the request failed.
pub async fn request(addr: &str, method: Method, path: &str) -> Result<String, String> {
    request_with_body(addr, method, path, String::new()).await
}

/// [`request`] with a body (JSON).
pub async fn request_with_body(
    addr: &str,
    method: Method,
    path: &str,
    body: String,
) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?
        .to_bytes();
    driver.abort();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else if status == StatusCode::NOT_FOUND {
        Err(format!("{addr} has no {path} (an older slotgate?)"))
    } else {
        Err(format!("{status}: {}", body.trim_end()))
    }
}
