//! Bearer-token authentication for the WebSocket and REST endpoints.
//!
//! A token comes from `Authorization: Bearer <token>` or `?token=<token>`; the
//! configured token table maps it to a [`Principal`] (role, name, optional
//! agent id it is bound to). Checked before any WebSocket upgrade. This module
//! must never log a token, and never compare tokens with an exit at the first
//! differing byte: the comparison's time depends only on the two lengths
//! (a token's length may show; its bytes do not).

use super::error::ApiError;
use super::protocol::Role;
use crate::config::AppConfig;
use actix_web::dev::RequestHead;
use actix_web::HttpRequest;
use std::sync::Arc;

/// Who is calling, as the token table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// The token's configured name; it labels logs and owns the connector's conversations.
    pub name: String,
    /// An agent token bound to one agent may log in only as that agent.
    pub agent_id: Option<String>,
}

/// The configured tokens (the config's constant-time lookup).
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: Arc<AppConfig>,
}

impl Authenticator {
    pub fn new(config: Arc<AppConfig>) -> Self {
        Authenticator { config }
    }

    /// The principal of `token`, if it is configured.
    pub fn principal(&self, token: &str) -> Option<Principal> {
        self.config
            .role_for_token(token)
            .map(|(role, entry)| Principal {
                role,
                name: entry.name.clone(),
                agent_id: entry.agent_id.clone(),
            })
    }

    /// Authenticates a request: its token must be present and configured.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        self.authenticate_head(req.head())
    }

    /// [`Self::authenticate`] for a bare request head (a WebSocket upgrade,
    /// which the HTTP server hands over before actix-web sees it).
    pub fn authenticate_head(&self, head: &RequestHead) -> Result<Principal, ApiError> {
        let token = request_token(head).ok_or(ApiError::Unauthorized("missing token"))?;
        self.principal(&token)
            .ok_or(ApiError::Unauthorized("invalid token"))
    }
}

/// The token of a request: the bearer header first, then `?token=`.
pub fn request_token(head: &RequestHead) -> Option<String> {
    if let Some(value) = head.headers().get(actix_web::http::header::AUTHORIZATION) {
        if let Ok(value) = value.to_str() {
            if let Some(token) = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            {
                let token = token.trim();
                if !token.is_empty() {
                    return Some(token.to_string());
                }
            }
        }
    }
    form_urlencoded_token(head.uri.query().unwrap_or_default())
}

fn form_urlencoded_token(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query);
    pairs
        .into_iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v)
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn auth() -> Authenticator {
        let config = AppConfig::from_toml_str(
            "[[auth.tokens]]\ntoken = \"t-agent\"\nrole = \"agent\"\nname = \"desk\"\n",
        )
        .expect("valid config");
        Authenticator::new(Arc::new(config))
    }

    #[test]
    fn header_and_query_tokens_are_read() {
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer t-agent"))
            .to_http_request();
        assert_eq!(auth().authenticate(&req).expect("valid").role, Role::Agent);
        let req = TestRequest::with_uri("/v1/ws?x=1&token=t-agent").to_http_request();
        assert_eq!(auth().authenticate(&req).expect("valid").name, "desk");
    }

    #[test]
    fn missing_and_wrong_tokens_are_refused() {
        let req = TestRequest::default().to_http_request();
        assert!(matches!(
            auth().authenticate(&req),
            Err(ApiError::Unauthorized("missing token"))
        ));
        let req = TestRequest::with_uri("/v1/ws?token=nope").to_http_request();
        assert!(matches!(
            auth().authenticate(&req),
            Err(ApiError::Unauthorized("invalid token"))
        ));
    }
}
