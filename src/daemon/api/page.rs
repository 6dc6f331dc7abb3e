//! The status page at `/`: one HTML document embedded in the binary
//! (`status.html`), which holds no data and draws everything from the JSON
//! endpoints with the token the user gives it. This file serves it with its
//! headers: a Content-Security-Policy that allows only its own inline script
//! and style, by their sha256, and only requests to this origin. What the
//! endpoints answer is `routes`' business.

use std::sync::OnceLock;

use base64::Engine;
use ring::digest::{SHA256, digest};

use crate::daemon::api::routes::Reply;

/// The page, as written in `status.html`.
const PAGE: &str = include_str!("status.html");

/// The page's answer: 200 with the document and its headers.
pub fn reply() -> Reply {
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: PAGE.to_string(),
        headers: vec![
            ("Content-Security-Policy", policy().to_string()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("X-Frame-Options", "DENY".into()),
            ("Referrer-Policy", "no-referrer".into()),
            ("Cache-Control", "no-cache".into()),
        ],
    }
}

/// The Content-Security-Policy, computed once from the page's inline
/// script and style.
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
             require-trusted-types-for 'script'",
            hash(inline(PAGE, "script")),
            hash(inline(PAGE, "style")),
        )
    })
}

/// The text between the first `<tag>` and the next `</tag>` of `page`.
fn inline<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).map_or(0, |at| at + open.len());
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map_or(start, |at| start + at);
    &page[start..end]
}

/// `sha256-<base64>` of `text`, as a CSP source names it.
fn hash(text: &str) -> String {
    let sum = digest(&SHA256, text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sum.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_hash_of_the_only_script_and_style() {
        assert_eq!(PAGE.matches("<script").count(), 1, "one script, inline");
        assert_eq!(PAGE.matches("<style").count(), 1, "one stylesheet, inline");
        let script = inline(PAGE, "script");
        assert!(script.contains("function refresh()"), "{script:.80}");
        assert!(inline(PAGE, "style").contains(".registry"));
        let csp = policy();
        assert!(
            csp.contains(&format!("script-src '{}';", hash(script))),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn hashes_are_spelt_as_csp_wants() {
        assert_eq!(
            hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        assert_eq!(inline("<p><b>x</b></p>", "b"), "x");
    }

    #[test]
    fn the_page_is_small_self_contained_and_holds_no_data() {
        assert!(PAGE.len() < 32 * 1024, "{} bytes", PAGE.len());
        for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
        for unsafe_sink in ["innerHTML", "outerHTML", "document.write", "eval("] {
            assert!(!PAGE.contains(unsafe_sink), "{unsafe_sink}");
        }
        assert!(PAGE.contains("<noscript>"));
        let headers = reply().headers;
        for (name, value) in [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
        ] {
            assert!(headers.contains(&(name, value.to_string())), "{headers:?}");
        }
    }
}
