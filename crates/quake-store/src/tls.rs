//! TLS for PostgreSQL connections (tokio-postgres + rustls with the `ring` provider).
//!
//! Reads the libpq-style `sslmode` and `sslrootcert` query parameters of the database URL:
//! - `disable`: plain TCP.
//! - `prefer` (the default, as in libpq) and `require`: TLS without certificate
//!   verification (libpq's meaning of `require` without a root certificate); `prefer` falls
//!   back to plain TCP when the server does not offer TLS.
//! - `verify-ca`: TLS, the chain checked against `sslrootcert`, the host name not checked.
//! - `verify-full`: TLS, chain and host name checked against `sslrootcert`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::StoreError;

/// How to secure the connection, parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa { root_cert: String },
    VerifyFull { root_cert: String },
}

/// Splits a PostgreSQL URL into the URL tokio-postgres understands and the TLS mode.
pub fn parse_pg_url(raw: &str) -> Result<(String, SslMode), StoreError> {
    let mut url = url::Url::parse(raw)
        .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", quake_core::redact_url(raw))))?;
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => mode = Some(v.into_owned()),
            "sslrootcert" => root = Some(v.into_owned()),
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    let ssl = match (mode.as_deref(), root) {
        (Some("disable"), _) => SslMode::Disable,
        (None | Some("prefer") | Some("allow"), _) => SslMode::Prefer,
        (Some("require"), _) => SslMode::Require,
        (Some("verify-ca"), Some(root_cert)) => SslMode::VerifyCa { root_cert },
        (Some("verify-full"), Some(root_cert)) => SslMode::VerifyFull { root_cert },
        (Some(m @ ("verify-ca" | "verify-full")), None) => {
            return Err(StoreError::InvalidUrl(format!(
                "sslmode={m} needs sslrootcert=PATH (a PEM file of the CA)"
            )));
        }
        (Some(other), _) => {
            return Err(StoreError::InvalidUrl(format!("unknown sslmode `{other}`")));
        }
    };
    let tp_mode = match ssl {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    kept.push(("sslmode".into(), tp_mode.into()));
    url.query_pairs_mut().clear().extend_pairs(kept);
    Ok((url.to_string(), ssl))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for a mode that uses TLS.
pub fn client_config(mode: &SslMode) -> Result<rustls::ClientConfig, StoreError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(e.to_string()))?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa { root_cert } | SslMode::VerifyFull { root_cert } => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(root_cert)
                .map_err(|e| StoreError::Tls(format!("sslrootcert {root_cert}: {e}")))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| StoreError::Tls(format!("sslrootcert {root_cert}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Tls(format!("sslrootcert {root_cert}: {e}")))?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| StoreError::Tls(e.to_string()))?;
            if matches!(mode, SslMode::VerifyCa { .. }) {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(IgnoreHostname(webpki)))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
        }
    };
    Ok(config)
}

/// `sslmode=require`: encrypt, do not verify (libpq's documented meaning).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must verify; the host name is not checked.
#[derive(Debug)]
struct IgnoreHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sslmode_is_parsed_and_rewritten() {
        let (url, mode) = parse_pg_url(
            "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            mode,
            SslMode::VerifyFull {
                root_cert: "/ca.pem".into()
            }
        );
        assert!(url.contains("sslmode=require") && url.contains("application_name=x"));
        assert!(!url.contains("sslrootcert"));
        assert_eq!(parse_pg_url("postgres://h/db").unwrap().1, SslMode::Prefer);
        assert_eq!(
            parse_pg_url("postgres://h/db?sslmode=disable").unwrap().1,
            SslMode::Disable
        );
        assert!(parse_pg_url("postgres://h/db?sslmode=verify-full").is_err());
        assert!(parse_pg_url("postgres://h/db?sslmode=bogus").is_err());
    }
}
