//! A string that must never reach a log, a metric, a status page, the journal or an error.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret looks like wherever it is shown.
pub const REDACTED: &str = "<redacted>";

/// A secret value (API key, private key). `Debug`, `Display` and `Serialize` all print
/// [`REDACTED`]; only [`Secret::expose`] gives the value, at the one place that sends it.
///
/// ```
/// use sluice::config::Secret;
/// let key = Secret::new("hunter2");
/// assert_eq!(format!("{key} {key:?}"), "<redacted> <redacted>");
/// assert_eq!(serde_json::to_string(&key).unwrap(), "\"<redacted>\"");
/// assert_eq!(key.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the request header or signer that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// An endpoint URL as it may be shown: scheme, host and port only. RPC providers put API keys
/// in paths and queries (`https://eth.example.org/v2/<key>`), so logs, errors and `sluice
/// check` show no more than this.
///
/// ```
/// use sluice::config::shown_url;
/// assert_eq!(shown_url("https://eth.example.org/v2/KEY?x=1"), "https://eth.example.org");
/// assert_eq!(shown_url("ws://127.0.0.1:8546/"), "ws://127.0.0.1:8546");
/// ```
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<bad url>".into(),
    }
}
