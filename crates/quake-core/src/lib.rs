#![doc = include_str!("../README.md")]

pub mod config;
mod run;
mod time;

pub use run::{RunStatus, Trigger, UnknownWord};
pub use time::{human_duration, parse_utc};

use url::Url;

/// What a hidden value is replaced with.
pub const REDACTED: &str = "***";

/// Query parameter names (lower-cased, matched as substrings) whose values are secret.
const SECRET_PARAMS: [&str; 8] = [
    "password",
    "passwd",
    "pwd",
    "token",
    "secret",
    "key",
    "auth",
    "credential",
];

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// `raw` with its user-info password and every secret-looking query value replaced by
/// [`REDACTED`]. Never fails: a string that does not parse as a URL is masked from the
/// scheme to its last `@` and loses its query, so no part of a password can show.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        // `user:pass@host` without `//` parses as scheme `user` and an opaque path.
        Ok(url) if !(url.cannot_be_a_base() && raw.contains('@')) => redact_parsed(&url),
        _ => redact_unparsed(raw),
    }
}

/// [`redact_url`] for an already parsed URL.
pub fn redact_parsed(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = u.set_password(Some(REDACTED));
    }
    if u.query_pairs().any(|(k, _)| secret_param(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// The fallback for a string the `url` crate refuses (an unencoded `/`, `#` or `@` in a
/// password does that): the user-info ends at the last `@` of the whole string.
fn redact_unparsed(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        // Not even a scheme: show only whether there was anything.
        return if raw.contains(['@', '?']) {
            REDACTED.to_owned()
        } else {
            raw.to_owned()
        };
    };
    let (scheme, rest) = raw.split_at(start);
    let (userinfo, host_path) = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let masked = if rest[..at].contains(':') {
                format!("{user}:{REDACTED}@")
            } else {
                format!("{user}@")
            };
            (masked, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let host_path = match host_path.find(['?', '#']) {
        Some(q) => format!("{}?{REDACTED}", &host_path[..q]),
        None => host_path.to_owned(),
    };
    format!("{scheme}{userinfo}{host_path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_secret_parameters_only() {
        let cases = [
            ("sqlite://quakesync.db", "sqlite://quakesync.db"),
            ("sqlite:///var/lib/q.db", "sqlite:///var/lib/q.db"),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://u:pw@host", "postgres://u:***@host"),
            ("postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
            ("postgres://u:p/a@ss@host/db", "postgres://u:***@host/db"),
            ("postgres://u:pa#ss@host/db", "postgres://u:***@host/db"),
            ("postgres://u:pa?ss@host/db", "postgres://u:***@host/db"),
            (
                "postgres://host/db?user=u&password=x&sslmode=require",
                "postgres://host/db?user=u&password=***&sslmode=require",
            ),
            (
                "https://mirror:pw@example.org/q?a=1&api_key=s3cr3t&Token=t",
                "https://mirror:***@example.org/q?a=1&api_key=***&Token=***",
            ),
            ("https://example.org/q?a=1", "https://example.org/q?a=1"),
            ("not a url", "not a url"),
            ("x:y@z", "***"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_url(raw), want, "{raw}");
        }
    }

    #[test]
    fn no_piece_of_a_password_survives() {
        let password = "S3cr3t/@#?:&=%";
        for url in [
            format!("postgres://u:{password}@h/d"),
            format!("postgres://u@h/d?password={password}"),
            format!("https://u:{password}@h/q?x=1"),
        ] {
            let shown = redact_url(&url);
            for piece in ["S3cr3t", "3cr3"] {
                assert!(!shown.contains(piece), "{url} -> {shown}");
            }
        }
    }
}
