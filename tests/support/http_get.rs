//! GETs against a server under test, its body read whole; each panics if the call fails.

/// The body of a GET of `url`, as text.
pub async fn text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The body of a GET of `url`, parsed as JSON.
pub async fn json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}
