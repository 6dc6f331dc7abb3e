//! The API's query strings: split into parameters and percent-decoded
//! (`+` is a space), refusing with a message that quotes the culprit what
//! cannot have been meant. What the parameters mean is `routes`' business.

/// A query string's parameters, percent-decoded (`+` is a space).
#[derive(Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `query`, refusing what cannot have been meant: a bad or
    /// non-UTF-8 percent-encoding, a control character, a parameter without
    /// a name, or one given twice. Each message quotes the culprit.
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|e| format!("parameter '{pair}': {e}"))?;
            let value = decode(value).map_err(|e| format!("parameter '{pair}': {e}"))?;
            if key.is_empty() {
                return Err(format!("parameter '{pair}' has no name"));
            }
            if params.iter().any(|(k, _)| *k == key) {
                return Err(format!(
                    "parameter '{key}' is given more than once; give it once"
                ));
            }
            params.push((key, value));
        }
        Ok(Query(params))
    }

    /// The value of `name`; an empty value counts as none.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes `text` into UTF-8 without control characters.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    let bad = &bytes[i..bytes.len().min(i + 3)];
                    return Err(format!(
                        "bad percent-encoding '{}'",
                        String::from_utf8_lossy(bad)
                    ));
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "not UTF-8 once percent-decoded".to_string())?;
    if text.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("a%20b+c%2a").as_deref(), Ok("a b c*"));
        assert_eq!(decode("%C3%A9").as_deref(), Ok("é"));
        assert_eq!(decode("%252F").as_deref(), Ok("%2F"), "decoded once");
        for (bad, why) in [
            ("%zz", "bad percent-encoding '%zz'"),
            ("a%4", "bad percent-encoding '%4'"),
            ("%", "bad percent-encoding '%'"),
            ("%ff", "not UTF-8 once percent-decoded"),
            ("a%00b", "holds a control character"),
            ("a%0D%0AX-Evil:1", "holds a control character"),
        ] {
            assert_eq!(decode(bad), Err(why.to_string()), "{bad}");
        }
        let q = Query::parse("x=1&type=active&&flag&empty=").unwrap();
        assert_eq!(q.get("type"), Some("active"));
        assert_eq!(q.get("flag"), None, "no value counts as none");
        assert_eq!(q.get("empty"), None);
        assert_eq!(q.get("missing"), None);
        assert!(Query::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn more_encodings() {
        assert_eq!(decode("").as_deref(), Ok(""));
        assert_eq!(
            decode("plain.example.com:5000").as_deref(),
            Ok("plain.example.com:5000")
        );
        assert_eq!(
            decode("%2b+%2B").as_deref(),
            Ok("+ +"),
            "an encoded plus stays a plus"
        );
        assert_eq!(
            decode("%7e%7E").as_deref(),
            Ok("~~"),
            "hex digits in either case"
        );
        assert_eq!(decode("%E2%82%AC").as_deref(), Ok("€"));
        assert_eq!(
            decode("a%E2%82"),
            Err("not UTF-8 once percent-decoded".to_string())
        );
        assert_eq!(
            decode("tab%09"),
            Err("holds a control character".to_string())
        );
        assert_eq!(decode("%-1"), Err("bad percent-encoding '%-1'".to_string()));
    }

    #[test]
    fn parameters() {
        let q =
            Query::parse("sync=b.example.com%3A5000&action=schedule&period=*/5+*+*+*+*").unwrap();
        assert_eq!(q.get("sync"), Some("b.example.com:5000"));
        assert_eq!(q.get("period"), Some("*/5 * * * *"));
        assert_eq!(q.get("Sync"), None, "names are case-sensitive");
        let q = Query::parse("a==b").unwrap();
        assert_eq!(q.get("a"), Some("=b"), "split at the first '='");
        for (query, why) in [
            ("=x", "parameter '=x' has no name"),
            (
                "a=1&a=2",
                "parameter 'a' is given more than once; give it once",
            ),
            (
                "a=1&%61=2",
                "parameter 'a' is given more than once; give it once",
            ),
            ("a=%zz", "parameter 'a=%zz': bad percent-encoding '%zz'"),
            ("%0A=1", "parameter '%0A=1': holds a control character"),
        ] {
            assert_eq!(Query::parse(query).unwrap_err(), why, "{query}");
        }
    }
}
