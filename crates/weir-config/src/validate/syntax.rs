//! Lexical checks for the strings routes are built from: HTTP tokens, header names and values,
//! host patterns and regular expressions.
//!
//! The grammar is RFC 9110's (`token` in §5.6.2, field values in §5.5); checking it here means
//! the router can build `http` types from the config without a fallible step on reload.

use std::net::Ipv6Addr;

/// What a problem is and how to fix it.
pub(super) struct Problem {
    pub(super) message: String,
    pub(super) hint: String,
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token`: one or more `tchar`.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// A method: an RFC 9110 token; weir also requires upper case, since methods are
/// case-sensitive and `get` would never match a real `GET`.
pub(super) fn check_method(method: &str) -> Result<(), Problem> {
    if !is_token(method) {
        return Err(Problem {
            message: format!("{method:?} is not a valid HTTP method"),
            hint: "write a method token such as GET, POST, PUT, DELETE or PURGE".into(),
        });
    }
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Problem {
            message: format!("method {method:?} is not upper case"),
            hint: format!(
                "methods are case-sensitive; write {}",
                method.to_ascii_uppercase()
            ),
        });
    }
    Ok(())
}

/// A header name: a token in lower case (HTTP/2 requires lower case on the wire, and matching
/// is case-insensitive, so one spelling avoids surprises).
pub(super) fn check_header_name(name: &str) -> Result<(), Problem> {
    let valid = "header names are lowercase letters, digits and !#$%&'*+-.^_`|~, e.g. x-canary";
    if !is_token(name) {
        return Err(Problem {
            message: format!("{name:?} is not a valid header name"),
            hint: valid.into(),
        });
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Problem {
            message: format!("header name {name:?} is not lower case"),
            hint: format!(
                "header names are case-insensitive; write {}",
                name.to_ascii_lowercase()
            ),
        });
    }
    Ok(())
}

/// A header value: visible ASCII, spaces, tabs and obs-text; no CR, LF or other controls.
pub(super) fn check_header_value(value: &str) -> Result<(), Problem> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Problem {
            message: format!("header value {value:?} contains a control character"),
            hint: "header values may not contain line breaks or other control characters".into(),
        });
    }
    Ok(())
}

/// A route host: an exact name (any case, no port) or `*.suffix`.
pub(super) fn check_host(host: &str) -> Result<(), Problem> {
    let forms = "write an exact host such as api.example.com, or *.example.com for every subdomain";
    let problem = |message: String, hint: &str| {
        Err(Problem {
            message,
            hint: hint.to_owned(),
        })
    };
    if host == "*" {
        return problem(
            "host `*` is not a pattern weir supports".into(),
            "leave `host` out to match every host",
        );
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return problem(
            format!("host {host:?} has a wildcard other than a leading `*.`"),
            forms,
        );
    }
    if name.is_empty() {
        return problem("host is empty".into(), forms);
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        if name.len() == host.len() && inner.parse::<Ipv6Addr>().is_ok() {
            return Ok(());
        }
        return problem(format!("host {host:?} is not a valid IPv6 literal"), forms);
    }
    if name.contains(':') {
        return problem(
            format!("host {host:?} has a port"),
            "hosts are matched without the port; leave the `:port` out",
        );
    }
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid || name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return problem(format!("{host:?} is not a host name"), forms);
    }
    Ok(())
}

/// A regular expression in `regex` crate syntax, matched against the whole value.
pub(super) fn check_regex(pattern: &str) -> Result<(), Problem> {
    // Compiled exactly as the router will (anchored), so a config that validates also compiles.
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Ok(_) => Ok(()),
        Err(error) => {
            // The syntax error is several lines (pattern, caret, reason); the reason is last.
            let text = error.to_string();
            let reason = text
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_owned())
                .unwrap_or(text);
            Err(Problem {
                message: format!("invalid regex {pattern:?}: {reason}"),
                hint: "use Rust regex syntax (https://docs.rs/regex/latest/regex/#syntax); the \
                       pattern must match the whole value"
                    .into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert!(check_method("GET").is_ok());
        assert!(check_method("M-SEARCH").is_ok());
        assert!(check_method("get").is_err_and(|p| p.hint.contains("GET")));
        assert!(check_method("GE T").is_err());
        assert!(check_method("").is_err());
    }

    #[test]
    fn header_names_and_values() {
        assert!(check_header_name("x-canary").is_ok());
        assert!(check_header_name("X-Canary").is_err_and(|p| p.hint.contains("x-canary")));
        assert!(check_header_name(":path").is_err());
        assert!(check_header_name("").is_err());
        assert!(check_header_value("a b\tc").is_ok());
        assert!(check_header_value("a\r\nb").is_err());
    }

    #[test]
    fn hosts() {
        for ok in [
            "api.example.com",
            "API.example.com",
            "*.example.com",
            "localhost",
            "[::1]",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "",
            "*.",
            "api.*.com",
            "*example.com",
            "a*.example.com",
            "example.com:80",
            "exa mple.com",
            "..com",
            "[nope]",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regexes_report_the_reason() {
        assert!(check_regex("^/v[0-9]+/.*").is_ok());
        let Err(problem) = check_regex("(abc") else {
            panic!("compiled")
        };
        assert!(
            problem.message.contains("unclosed group"),
            "{}",
            problem.message
        );
    }
}
