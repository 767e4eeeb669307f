//! Outbound connections (to upstreams and to the IdP): TCP with `TCP_NODELAY`
//! and a connect timeout, and TLS (rustls) for `https://`: by default the
//! operating system's trust store together with the bundled webpki roots, or
//! only a configured CA bundle (`ca_file`).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Connector that speaks plain HTTP or HTTPS depending on the URI scheme.
pub type Connector = HttpsConnector<HttpConnector>;

/// Which protocol a connector offers over TLS (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only.
    Http1,
    /// `h2` only: the upstream must speak HTTP/2 (gRPC).
    Http2,
}

/// Builds a connector that trusts `ca` alone when given (else the default
/// roots) and offers `alpn` over TLS.
pub fn build_with(
    connect_timeout: Duration,
    ca: Option<&[CertificateDer<'static>]>,
    alpn: Alpn,
) -> Result<Connector, rustls::Error> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    let roots = match ca {
        // A private CA replaces the public roots: a route pinned to an
        // internal PKI must not accept a publicly issued certificate.
        Some(certs) => ca_roots(certs)?,
        None => default_roots().clone(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(tcp),
        Alpn::Http2 => builder.enable_http2().wrap_connector(tcp),
    })
}

/// The bundled webpki (Mozilla) roots plus the operating system's store, read
/// once: an enterprise CA installed on the host or image (e.g. in
/// /etc/ssl/certs) is trusted without extra configuration.
fn default_roots() -> &'static RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() {
            tracing::debug!(
                errors = native.errors.len(),
                "some system certificates could not be read"
            );
        }
        tracing::debug!(system = added, "trust roots loaded");
        roots
    })
}

/// Every certificate of a PEM bundle as a trust anchor.
fn ca_roots(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone())?;
    }
    Ok(roots)
}
