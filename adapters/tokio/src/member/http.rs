//! The HTTP client of the frontend's node routes: hyper-util over rustls (HTTPS when the URL
//! says so), 10 s per request, redirects never followed, bodies bounded.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nodegate_core::startup::HttpResult;

/// Time allowed for one request, answer included (LocalAI's client uses 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read.
const MAX_ANSWER: usize = 256 * 1024;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client of the frontend's `/api/node/*` routes.
#[derive(Clone)]
pub(crate) struct FrontendClient {
    client: Client<Https, Full<Bytes>>,
    bearer: Option<HeaderValue>,
}

impl FrontendClient {
    /// A client that sends `Authorization: Bearer <token>` when a token is given.
    pub(crate) fn new(token: Option<&str>) -> std::io::Result<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let bearer = match token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        std::io::Error::other("the registration token is not a valid header value")
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            bearer,
        })
    }

    /// `POST url` with a JSON body (or none).
    pub(crate) async fn post(&self, url: &str, body: Option<Vec<u8>>) -> HttpResult {
        self.send("POST", url, body).await
    }

    /// `GET url`.
    pub(crate) async fn get(&self, url: &str) -> HttpResult {
        self.send("GET", url, None).await
    }

    async fn send(&self, method: &str, url: &str, body: Option<Vec<u8>>) -> HttpResult {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(bearer) = &self.bearer {
            builder = builder.header(AUTHORIZATION, bearer.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = match builder.body(Full::new(Bytes::from(body.unwrap_or_default()))) {
            Ok(request) => request,
            Err(_) => return HttpResult::Failed(format!("{method} {}: invalid URL", shown(url))),
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => HttpResult::Response { status, body },
            Ok(Err(error)) => HttpResult::Failed(error),
            Err(_) => {
                HttpResult::Failed(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            }
        }
    }
}

/// The error chain of a failed request, without the URL (it may carry user info).
pub(crate) fn describe(error: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL with any user info masked, for messages.
fn shown(url: &str) -> String {
    nodegate_core::config::redact_userinfo(url)
}
