//! Query strings as the real APIs read them: repeated keys (`ids[]=a&ids[]=b`), percent-encoded
//! keys (`ids%5B%5D=`), `+` for spaces.

/// The decoded `(key, value)` pairs of a query string, in order.
pub(crate) fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The first value of `key`.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes one component (form style: `+` is a space). Invalid escapes stay as they
/// are; invalid UTF-8 becomes U+FFFD.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(decoded) = hex {
                    out.push(decoded);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_encoded_keys() {
        let got = pairs("ids[]=aa&ids%5B%5D=0xBB&parsed=true&q=a+b%2Cc&bad=%zz&flag");
        let want = [
            ("ids[]", "aa"),
            ("ids[]", "0xBB"),
            ("parsed", "true"),
            ("q", "a b,c"),
            ("bad", "%zz"),
            ("flag", ""),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert_eq!(first(&got, "parsed"), Some("true"));
        assert_eq!(first(&got, "nope"), None);
    }
}
