//! MySQL over TLS, configured in the URL so one secret (`TRADEWIND_MYSQL_URL`) says everything.
//!
//! mysql_async's own URL options switch TLS on and off (`require_ssl=true`, `verify_ca`,
//! `verify_identity`, `built_in_roots`) but cannot name a CA file, which a private CA (Kubernetes, a
//! managed MySQL's CA bundle) needs. This adds one option, `ssl_ca=/path/ca.pem`: it implies
//! `require_ssl=true` and trusts that CA (with the system roots unless `built_in_roots=false`).
//! Verification of the chain and of the host name stays on unless the URL turns it off.

use std::path::PathBuf;

use mysql_async::{Opts, OptsBuilder};

use crate::SinkError;

/// The URL option naming a PEM CA certificate file to verify the server against.
pub const SSL_CA_PARAM: &str = "ssl_ca";

/// Parses a `mysql://` URL into connection options, honouring `ssl_ca=` on top of mysql_async's own
/// options. Errors never echo the URL (it may carry a password).
pub(crate) fn opts_from_url(url: &str) -> Result<Opts, SinkError> {
    let (rest, ca) = split_ssl_ca(url)?;
    let opts = Opts::from_url(&rest).map_err(|e| SinkError::Url(e.to_string()))?;
    let Some(ca) = ca else {
        return Ok(opts);
    };
    if !ca.is_file() {
        return Err(SinkError::Url(format!(
            "{SSL_CA_PARAM}={} is not a readable file",
            ca.display()
        )));
    }
    let ssl = opts
        .ssl_opts()
        .cloned()
        .unwrap_or_default()
        .with_root_certs(vec![ca.into()]);
    Ok(OptsBuilder::from_opts(opts).ssl_opts(Some(ssl)).into())
}

/// Removes `ssl_ca=` from the query string of `url`; returns the remaining URL and the CA path.
fn split_ssl_ca(url: &str) -> Result<(String, Option<PathBuf>), SinkError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut ca = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((SSL_CA_PARAM, value)) => {
                let value = percent_decode(value)
                    .ok_or_else(|| SinkError::Url(format!("bad {SSL_CA_PARAM} encoding")))?;
                if value.is_empty() {
                    return Err(SinkError::Url(format!("{SSL_CA_PARAM} is empty")));
                }
                ca = Some(PathBuf::from(value));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, ca))
}

/// Decodes `%XX` escapes (a path may contain reserved characters); `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `opts` will use TLS (for the connect log line).
pub(crate) fn describe(opts: &Opts) -> &'static str {
    match opts.ssl_opts() {
        None => "plain",
        Some(s) if s.accept_invalid_certs() => "tls (server certificate NOT verified)",
        Some(s) if s.skip_domain_validation() => "tls (CA verified, host name not verified)",
        Some(_) => "tls (verified)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_ca_is_split_off_and_other_options_kept() {
        let (rest, ca) =
            split_ssl_ca("mysql://u:p@h:3306/db?ssl_ca=%2Fetc%2Fca.pem&verify_identity=false")
                .expect("valid");
        assert_eq!(rest, "mysql://u:p@h:3306/db?verify_identity=false");
        assert_eq!(ca, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, ca) = split_ssl_ca("mysql://u@h/db").expect("valid");
        assert_eq!((rest.as_str(), ca), ("mysql://u@h/db", None));
        let (rest, _) = split_ssl_ca("mysql://u@h/db?ssl_ca=/x").expect("valid");
        assert_eq!(rest, "mysql://u@h/db");
    }

    #[test]
    fn bad_ssl_ca_values_are_errors_without_the_url() {
        for url in [
            "mysql://u:secret@h/db?ssl_ca=",
            "mysql://u:secret@h/db?ssl_ca=%zz",
            "mysql://u:secret@h/db?ssl_ca=/does/not/exist.pem",
        ] {
            let err = opts_from_url(url).expect_err(url).to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn plain_urls_still_parse() {
        let opts = opts_from_url("mysql://root@127.0.0.1:3306/x").expect("valid");
        assert_eq!(describe(&opts), "plain");
        let opts = opts_from_url("mysql://root@127.0.0.1:3306/x?require_ssl=true").expect("valid");
        assert_eq!(describe(&opts), "tls (verified)");
    }
}
