//! The HTTP(S) client of the frontend's node routes (register, heartbeat, drain, in-flight,
//! deregister) over hyper 1's client connection on smol: one connection per request, TLS by
//! futures-rustls when the URL says `https`, 10 s per request (answer included), redirects
//! never followed (a 3xx is returned as an answer, for the core to judge), bodies bounded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use nodegate_core::startup::HttpResult;
use rustls::ClientConfig;

use crate::rt::{self, FuturesIo};
use crate::tls::{self, Stream};

/// Time allowed for one request, answer included (LocalAI's client uses 10 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read.
const MAX_ANSWER: usize = 256 * 1024;

/// A client of the frontend's `/api/node/*` routes.
#[derive(Clone)]
pub struct FrontendClient {
    bearer: Option<HeaderValue>,
    tls: Arc<ClientConfig>,
}

impl FrontendClient {
    /// A client that sends `Authorization: Bearer <token>` when a token is given, trusting
    /// the system's roots for HTTPS.
    ///
    /// # Errors
    /// The token is not a valid header value, or TLS cannot be set up.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        let bearer = match token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "the registration token is not a valid header value".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            bearer,
            tls: tls::client_config(None, None)?,
        })
    }

    /// `POST url` with a JSON body (or none).
    pub async fn post(&self, url: &str, body: Option<Vec<u8>>) -> HttpResult {
        self.send("POST", url, body).await
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> HttpResult {
        self.send("GET", url, None).await
    }

    async fn send(&self, method: &str, url: &str, body: Option<Vec<u8>>) -> HttpResult {
        let shown = nodegate_core::config::redact_userinfo(url);
        let Some(target) = Target::parse(url) else {
            return HttpResult::Failed(format!("{method} {shown}: invalid URL"));
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(target.path.clone())
            .header(HOST, target.host_header.clone());
        if let Some(bearer) = &self.bearer {
            builder = builder.header(AUTHORIZATION, bearer.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let Ok(request) = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
            return HttpResult::Failed(format!("{method} {shown}: invalid URL"));
        };
        match rt::timeout(REQUEST_TIMEOUT, self.exchange(&target, request)).await {
            Some(Ok((status, body))) => HttpResult::Response { status, body },
            Some(Err(error)) => HttpResult::Failed(error),
            None => HttpResult::Failed(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        }
    }

    async fn exchange(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<u8>), String> {
        let tcp = tls::connect_tcp(&target.host, target.port, REQUEST_TIMEOUT)
            .await
            .map_err(|e| format!("tcp connect error: {e}"))?;
        let stream = if target.https {
            tls::upgrade(tcp, self.tls.clone(), &target.host)
                .await
                .map_err(|e| format!("TLS handshake: {}", error_chain(&e)))?
        } else {
            Stream::Plain(tcp)
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(FuturesIo::new(stream))
                .await
                .map_err(|e| error_chain(&e))?;
        let driver = rt::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes()
            .to_vec();
        drop(sender);
        driver.cancel().await;
        Ok((status, body))
    }
}

/// Where a request goes.
struct Target {
    https: bool,
    host: String,
    port: u16,
    host_header: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let https = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_header = match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Some(Self {
            https,
            host: host.to_owned(),
            port,
            host_header,
            path,
        })
    }
}

/// An error and its sources, `: `-separated (the URL is never part of it).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_a_connection_target_and_an_origin_form_path() {
        let t = Target::parse("http://user:pw@frontend:8080/api/node/register?x=1").expect("valid");
        assert_eq!(
            (t.https, t.host.as_str(), t.port),
            (false, "frontend", 8080)
        );
        assert_eq!(t.host_header, "frontend:8080");
        assert_eq!(t.path, "/api/node/register?x=1");
        let t = Target::parse("https://[::1]/x").expect("valid");
        assert_eq!((t.https, t.host.as_str(), t.port), (true, "::1", 443));
        assert!(Target::parse("ftp://host/").is_none());
        assert!(Target::parse("not a url").is_none());
    }

    #[test]
    fn an_unreachable_frontend_is_a_failure_without_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let client = FrontendClient::new(Some("tok")).expect("client");
        let url = format!("http://user:secret-pw@127.0.0.1:{port}/api/node/register");
        let HttpResult::Failed(text) = rt::block_on(client.post(&url, Some(b"{}".to_vec()))) else {
            panic!("nothing listens there")
        };
        assert!(!text.contains("secret-pw"), "{text}");
        assert!(text.contains("connect"), "{text}");
    }
}
