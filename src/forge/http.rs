//! What forges' HTTP APIs have in common: how long a rate limit asks us to wait.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// maur's HTTP client for a forge's API: its user agent and bounded waits. `follow_redirects`
/// only where the credentials travel in `Authorization` (which the client drops when a
/// redirect leaves the host); a custom token header would follow the redirect anywhere.
pub fn client(follow_redirects: bool) -> reqwest::Result<reqwest::Client> {
    let redirects = if follow_redirects {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .user_agent(concat!("maur/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(redirects)
        .build()
}

/// How long the forge asks us to wait, if this answer is a rate limit: `Retry-After`, or a
/// remaining count of 0 with its reset time (GitHub's `x-ratelimit-*`, GitLab's
/// `RateLimit-*`), or a 429 (or a 403 that says "rate limit") without headers, where the
/// documented advice is a minute.
pub fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: i64,
) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs.max(1) as u64));
    }
    for (remaining, reset) in [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    ] {
        if header(remaining) == Some(0) {
            let reset = header(reset).unwrap_or(now + 60);
            return Some(Duration::from_secs((reset - now).max(1) as u64));
        }
    }
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || message.to_ascii_lowercase().contains("rate limit");
    limited.then(|| Duration::from_secs(60))
}

/// What to do with a forge's unsuccessful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then send the request again.
    Retry(Duration),
    /// Give up for now; a later retry of the task may work (rate limited for long, 5xx).
    Transient(String),
    NotFound,
    /// The forge refused and will refuse again.
    Rejected,
}

/// The retry policy every forge client shares.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Sends of one request at most.
    pub attempts: u32,
    /// A rate limit longer than this ends the attempt rather than block a worker.
    pub max_wait: Duration,
    /// The first wait after a 5xx; doubles per attempt.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// Pure: what to do after an unsuccessful answer. `attempt` counts from 1; a request
    /// that is not `repeatable` (it may have taken effect) is never sent again after a 5xx.
    pub fn next(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
        now: i64,
        attempt: u32,
        repeatable: bool,
    ) -> Next {
        if let Some(wait) = rate_limit_wait(status, headers, message, now) {
            return if wait <= self.max_wait && attempt < self.attempts {
                Next::Retry(wait)
            } else {
                Next::Transient(format!("rate limited for {}s: {message}", wait.as_secs()))
            };
        }
        if status.is_server_error() {
            return if attempt < self.attempts && repeatable {
                Next::Retry(self.backoff * 2u32.pow(attempt.saturating_sub(1)))
            } else {
                Next::Transient(format!("{status}: {message}"))
            };
        }
        if status == StatusCode::NOT_FOUND {
            return Next::NotFound;
        }
        Next::Rejected
    }
}

/// A forge's successful answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub headers: HeaderMap,
}

impl Answer {
    /// The `rel="last"` page of a paginated answer (the `Link` header), as a path relative
    /// to the API base.
    pub fn last_page(&self, api_url: &str) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, rel) = part.split_once(';')?;
            if !rel.contains("rel=\"last\"") {
                return None;
            }
            let url = url.trim().trim_start_matches('<').trim_end_matches('>');
            url.strip_prefix(api_url).map(str::to_owned)
        })
    }
}

/// Why a call failed for good, before each forge names it in its own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Transient(String),
    NotFound(String),
    Rejected { status: u16, message: String },
}

/// One send of a request, judged.
pub enum Outcome {
    Done(Answer),
    /// Wait this long and send it again.
    Retry(Duration),
    Failed(Failure),
}

impl RetryPolicy {
    /// Sends `request` (attempt number `attempt`, counting from 1) and says what to do
    /// next. `call` (`GET /path`) names the request in errors; it never holds a secret.
    pub async fn attempt(
        &self,
        request: reqwest::RequestBuilder,
        call: &str,
        attempt: u32,
        repeatable: bool,
    ) -> Outcome {
        super::count_api_call();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                // A refused connection surely sent nothing; anything else may have.
                if attempt < self.attempts && (repeatable || e.is_connect()) {
                    return Outcome::Retry(self.backoff * 2u32.pow(attempt - 1));
                }
                return Outcome::Failed(Failure::Transient(format!("{call}: {}", e.without_url())));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()))
        };
        if status.is_success() {
            return Outcome::Done(Answer {
                status,
                body,
                headers,
            });
        }
        let message = body
            .get("message")
            .or_else(|| body.get("error"))
            .map(|m| match m {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        let now = chrono::Utc::now().timestamp();
        match self.next(status, &headers, &message, now, attempt, repeatable) {
            Next::Retry(wait) => {
                tracing::info!(
                    call,
                    wait_ms = wait.as_millis() as u64,
                    "forge answered {status}: trying again"
                );
                Outcome::Retry(wait)
            }
            Next::Transient(why) => Outcome::Failed(Failure::Transient(format!("{call}: {why}"))),
            Next::NotFound => Outcome::Failed(Failure::NotFound(format!("{call}: {message}"))),
            Next::Rejected => Outcome::Failed(Failure::Rejected {
                status: status.as_u16(),
                message: format!("{call}: {message}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_retry_policy() {
        let h = HeaderMap::new();
        let policy = RetryPolicy {
            attempts: 4,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        };
        let step = |status: u16, attempt: u32, repeatable: bool| {
            policy.next(
                StatusCode::from_u16(status).unwrap(),
                &h,
                "",
                0,
                attempt,
                repeatable,
            )
        };
        assert_eq!(step(502, 1, true), Next::Retry(Duration::from_millis(500)));
        assert_eq!(step(502, 3, true), Next::Retry(Duration::from_secs(2)));
        assert!(
            matches!(step(502, 4, true), Next::Transient(_)),
            "attempts spent"
        );
        assert!(
            matches!(step(502, 1, false), Next::Transient(_)),
            "never twice"
        );
        assert_eq!(
            step(429, 1, false),
            Next::Retry(Duration::from_secs(60)),
            "a rate limit did nothing"
        );
        assert_eq!(step(404, 1, true), Next::NotFound);
        assert_eq!(step(422, 1, true), Next::Rejected);
        let mut long = HeaderMap::new();
        long.insert(
            "retry-after",
            reqwest::header::HeaderValue::from_static("3600"),
        );
        let waited = policy.next(StatusCode::TOO_MANY_REQUESTS, &long, "", 0, 1, true);
        assert!(
            matches!(waited, Next::Transient(_)),
            "an hour is too long to block a worker"
        );
    }

    #[test]
    fn rate_limits_are_read_from_the_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h, "", 100),
            None,
            "a plain 403"
        );
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h, "", 100),
            Some(Duration::from_secs(7))
        );
        assert_eq!(rate_limit_wait(StatusCode::BAD_REQUEST, &h, "", 100), None);
        for (remaining, reset) in [
            ("x-ratelimit-remaining", "x-ratelimit-reset"),
            ("ratelimit-remaining", "ratelimit-reset"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(remaining, HeaderValue::from_static("0"));
            h.insert(reset, HeaderValue::from_static("130"));
            assert_eq!(
                rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &h, "", 100),
                Some(Duration::from_secs(30))
            );
        }
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), "", 100),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit",
                100
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "Resource not accessible by integration",
                100
            ),
            None
        );
    }
}
