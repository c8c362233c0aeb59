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
        d.deserialize_any(SecretVisitor)
    }
}

/// Takes a string, or an integer written without quotes (an all-digit API key in a TOML
/// file); refuses anything else without quoting it, since the value is the secret.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(
            "a secret must be a string (quote it); the value is not shown",
        ))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(
            "a secret must be a string (quote it); the value is not shown",
        ))
    }
}

/// The configuration keys that hold secrets, each with the environment variables that set it
/// (lowest precedence first), as [`super::Config::figment`] layers them.
pub(super) fn secret_env_names() -> Vec<(&'static str, Vec<String>)> {
    const KEYS: &[&str] = &[
        "dexscreener.api_key",
        "birdeye.api_key",
        "hermes.api_key",
        "chain.private_key",
        "mesh.operator_key",
        "mesh.admin_token",
    ];
    KEYS.iter()
        .map(|key| {
            let mut names = vec![format!(
                "SLUICE__{}",
                key.replace('.', "__").to_ascii_uppercase()
            )];
            names.extend(
                super::SEED_ENV
                    .iter()
                    .filter(|(_, k)| k == key)
                    .map(|(name, _)| (*name).to_owned()),
            );
            (*key, names)
        })
        .collect()
}

/// Secrets from the environment exactly as written. The general environment provider reads
/// values as TOML-ish data (`007` becomes the number 7, `[a]` a list, quotes and surrounding
/// spaces are stripped), which would silently change a key; merged after it, this puts the
/// raw strings back. Its metadata reads like the environment provider's, so errors name the
/// same origin.
pub(super) struct SecretEnv(pub(super) Vec<(String, String)>);

impl SecretEnv {
    /// The process environment's variables (those with UTF-8 names and values).
    pub(super) fn from_process() -> Self {
        SecretEnv(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }
}

impl figment::Provider for SecretEnv {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable(s)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};
        let mut dict = Dict::new();
        for (key, names) in secret_env_names() {
            // The last name set wins: the seed's names over `SLUICE__` ones.
            let value = names.iter().rev().find_map(|name| {
                self.0
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            });
            // Every secret is `section.field`.
            if let (Some(value), Some((section, field))) = (value, key.split_once('.'))
                && let Value::Dict(_, fields) = dict
                    .entry(section.to_owned())
                    .or_insert_with(|| Dict::new().into())
            {
                fields.insert(field.to_owned(), value.into());
            }
        }
        Ok(figment::Profile::Default.collect(dict))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_TOML};
    use figment::Figment;
    use figment::providers::{Format, Toml};

    fn load(vars: &[(&str, &str)]) -> Config {
        let vars = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Figment::from(Toml::string(DEFAULT_TOML))
            .merge(SecretEnv(vars))
            .extract()
            .unwrap()
    }

    /// Values the general environment reader would turn into numbers, lists or trimmed
    /// strings arrive exactly as written; the seed's names win over `SLUICE__` ones.
    #[test]
    fn secrets_from_the_environment_are_taken_verbatim() {
        let config = load(&[
            ("BIRDEYE_API_KEY", "0071234"),
            ("SLUICE__HERMES__API_KEY", " [x] "),
            ("SLUICE__DEXSCREENER__API_KEY", "from-sluice"),
            ("dex_screener_api_key", "from-seed"),
            ("MESH_ADMIN_TOKEN", "\"quoted\""),
        ]);
        assert_eq!(config.birdeye.api_key.expose(), "0071234");
        assert_eq!(config.hermes.api_key.expose(), " [x] ");
        assert_eq!(config.dexscreener.api_key.expose(), "from-seed");
        assert_eq!(config.mesh.admin_token.expose(), "\"quoted\"");
        assert!(config.chain.private_key.is_empty());
    }

    /// An unquoted number in a file is taken as its digits; other non-strings are refused
    /// without showing the value.
    #[test]
    fn non_string_secrets_are_refused_without_their_value() {
        let from = |toml: &str| {
            Figment::from(Toml::string(DEFAULT_TOML))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        let config = from("[birdeye]\napi_key = 123456789\n").unwrap();
        assert_eq!(config.birdeye.api_key.expose(), "123456789");
        let err = from("[birdeye]\napi_key = 98765.4321\n").unwrap_err();
        assert!(err.contains("quote it") && !err.contains("98765"), "{err}");
    }
}
