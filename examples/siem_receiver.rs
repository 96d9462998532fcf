//! A tiny recording receiver for trying driftwatch's HTTP sinks: it answers
//! every request `200` and prints what came, one line each, so you can see
//! findings arrive without a SIEM.
//!
//! ```text
//! cargo run --example siem_receiver -- 9880
//! ```
//!
//! For each request: the method, the path, whether an `Authorization`
//! header came (never the token) and the content type; then, for each item
//! of a JSON body (an array, one object, or Splunk HEC's concatenated
//! events), its id, type and severity in whichever format it is in
//! (driftwatch native findings and alerts, OCSF, ECS, a Slack message's
//! text); for a body that is not JSON (CEF), each line as it is. It listens
//! on loopback only.

use std::net::{Ipv4Addr, SocketAddr};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let port: u16 = match std::env::args().nth(1) {
        None => 9880,
        Some(p) => p
            .parse()
            .map_err(|e| format!("usage: siem_receiver [PORT]: {p:?}: {e}"))?,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

async fn serve(addr: SocketAddr) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await?;
    println!("siem_receiver: listening on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(record);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("siem_receiver: connection: {e}");
            }
        });
    }
}

async fn record(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let auth = if req.headers().contains_key("authorization") {
        "yes"
    } else {
        "no"
    };
    let head = format!(
        "{} {} auth={auth} content-type={}",
        req.method(),
        req.uri().path(),
        header("content-type")
    );
    let body = req.into_body().collect().await?.to_bytes();
    let items = items(&body);
    println!("{head} items={}", items.len());
    for item in items {
        println!("  {item}");
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// One line per item of the body.
fn items(body: &[u8]) -> Vec<String> {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .collect();
    match values {
        Ok(values) if !values.is_empty() => values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items,
                other => vec![other],
            })
            .map(|v| describe(&v))
            .collect(),
        _ => String::from_utf8_lossy(body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// `id=... type=... severity=...` of a native finding or alert, an OCSF
/// or ECS document, a Splunk HEC event around any of them, or a Slack
/// message's text.
fn describe(v: &Value) -> String {
    if let Some(event) = v.get("event").filter(|_| v.get("sourcetype").is_some()) {
        return match event {
            Value::String(cef) => cef.clone(),
            other => describe(other),
        };
    }
    if let Some(text) = v.get("text").and_then(Value::as_str) {
        return format!("text={text}");
    }
    let first = |pointers: &[&str]| {
        pointers
            .iter()
            .find_map(|p| match v.pointer(p) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    format!(
        "id={} type={} severity={}",
        first(&[
            "/id",
            "/metadata/uid",
            "/event/id",
            "/drift_id",
            "/finding/id"
        ]),
        first(&["/type", "/finding_info/types/0", "/rule/name", "/kind"]),
        first(&["/severity", "/event/severity"]),
    )
}
