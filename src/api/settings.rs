//! [`ClientSettings`]: everything needed to reach one Joe Sandbox server, how the user's
//! server URL becomes the API base, and the one HTTP client built from them.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::error::ApiError;
use super::retry::RetryPolicy;
use super::secret::{ApiKey, Secret};
use super::upload::CHUNK_SIZE;

/// jbxapi's default server (Cloud Pro).
pub const DEFAULT_SERVER_URL: &str = "https://jbxcloud.joesecurity.org";

/// Everything needed to talk to one Joe Sandbox server.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Server URL (`https://jbxcloud.joesecurity.org`) or API base (`.../api`,
    /// `http://host/joesandbox/index.php/api`).
    pub server_url: String,
    pub api_key: ApiKey,
    /// Sent as `encrypt-with-password` with every submission when set: the analyses are
    /// encrypted and their downloads are AES zips with this password.
    pub encrypt_password: Option<Secret>,
    /// Sent as `accept-tac` on submissions; the cloud refuses submissions without it.
    pub accept_tac: bool,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy for every API connection.
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
    /// Longest silence while reading a reply.
    pub read_timeout: Duration,
    /// Deadline of a small call; uploads and downloads get a deadline sized to their length.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Files larger than this are uploaded in chunks of [`CHUNK_SIZE`].
    pub chunked_threshold: u64,
    /// Largest download accepted; `None` = unlimited.
    pub max_download_bytes: Option<u64>,
    /// A download slower than this (bytes per second, averaged over `throughput_window`) is
    /// aborted: a slowloris server sending a byte every few seconds never trips the read-idle
    /// timeout. 0 = no minimum.
    pub min_download_rate: u64,
    pub throughput_window: Duration,
    pub user_agent: String,
}

impl ClientSettings {
    pub fn new(server_url: impl Into<String>, api_key: ApiKey) -> Self {
        Self {
            server_url: server_url.into(),
            api_key,
            encrypt_password: None,
            accept_tac: false,
            ca_file: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            chunked_threshold: CHUNK_SIZE,
            max_download_bytes: None,
            min_download_rate: 1024,
            throughput_window: Duration::from_secs(60),
            user_agent: format!("jbxd/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Derives the API base from what the user gave: a URL already ending in `/api` (jbxapi's
/// `JBX_API_URL` form, or on-premise `.../joesandbox/index.php/api`) is used as it is, a
/// trailing `/v2` is dropped, anything else gets `/api` appended.
pub fn api_base(server_url: &str) -> Result<Url, ApiError> {
    let trimmed = server_url.trim().trim_end_matches('/');
    let mut url = Url::parse(trimmed)
        .map_err(|e| ApiError::Config(format!("server URL `{trimmed}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::Config(format!(
            "server URL `{trimmed}` must be an http:// or https:// URL with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Config(
            "the server URL must not contain credentials; use the API key settings".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    if path.ends_with("/api/v2") {
        path.truncate(path.len() - 3);
    }
    if !path.ends_with("/api") {
        path.push_str("/api");
    }
    url.set_path(&path);
    Ok(url)
}

/// Builds the one reqwest client of the process, with rustls on the ring provider.
pub(super) fn http_client(settings: &ClientSettings) -> Result<reqwest::Client, ApiError> {
    // reqwest is built without a default crypto provider; without this call building the
    // client panics. Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(&settings.user_agent)
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ApiError::Config(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ApiError::Config(format!("the CA file {} is not PEM: {e}", path.display()))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(proxy) = &settings.proxy {
        let proxy =
            reqwest::Proxy::all(proxy).map_err(|e| ApiError::Config(format!("proxy URL: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_accepts_server_urls_and_api_urls() {
        let base = |s| api_base(s).unwrap().to_string();
        assert_eq!(
            base("https://jbxcloud.joesecurity.org"),
            "https://jbxcloud.joesecurity.org/api"
        );
        assert_eq!(
            base("https://jbxcloud.joesecurity.org/api/"),
            "https://jbxcloud.joesecurity.org/api"
        );
        assert_eq!(
            base("http://sandbox.local/joesandbox/index.php/api"),
            "http://sandbox.local/joesandbox/index.php/api"
        );
        assert_eq!(
            base("http://sandbox.local/joesandbox/index.php"),
            "http://sandbox.local/joesandbox/index.php/api"
        );
        assert_eq!(base("http://127.0.0.1:9/api/v2"), "http://127.0.0.1:9/api");
    }

    #[test]
    fn api_base_rejects_non_http_urls_and_credentials() {
        assert!(api_base("ftp://x/api").is_err());
        assert!(api_base("jbxcloud.joesecurity.org").is_err());
        let err = api_base("https://user:secret@host/api").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
