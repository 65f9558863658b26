//! One site's OpenID provider: discovery, the authorization request (code
//! flow with PKCE, state and nonce), the code exchange with every ID-token
//! check `openidconnect` makes, RP-initiated logout, and back-channel logout
//! tokens (which `openidconnect` does not parse, so they are checked here
//! with the provider's own keys and algorithms).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    JsonWebKey, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How long discovered metadata (and its signing keys) is used before it
/// is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A provider that could not be reached is asked again after this long, so
/// a flood of sign-ins does not become a flood of discovery requests.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Timeout of every call to the provider.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The back-channel logout event (OpenID Connect Back-Channel Logout 1.0 §2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The oldest logout token taken, by its `iat`.
const LOGOUT_TOKEN_MAX_AGE_SECS: i64 = 600;

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the OpenID provider {issuer} could not be discovered: {why}")]
    Discovery { issuer: String, why: String },
    #[error("the OpenID provider refused the sign-in code: {0}")]
    Exchange(String),
    #[error("the ID token failed its checks: {0}")]
    IdToken(String),
    #[error("the logout token failed its checks: {0}")]
    LogoutToken(&'static str),
    #[error("the redirect URL {0:?} is invalid")]
    RedirectUrl(String),
}

/// What a finished sign-in proves; a session record keeps it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedIn {
    /// The ID token's `sub`.
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Every claim of the ID token (and userinfo's), as `/_grove/auth/me` shows them.
    pub claims: serde_json::Value,
    /// The identity provider's session id (`sid`), which back-channel
    /// logouts name.
    pub provider_session: Option<String>,
    /// The ID token, sent back as the hint when the user signs out.
    pub id_token: String,
}

impl SignedIn {
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }
}

/// A sign-in's redirect and what its callback must check.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

/// Whom a back-channel logout ends: a provider session, or a subject's
/// every session.
#[derive(Debug, Clone, PartialEq)]
pub enum LogoutTarget {
    ProviderSession(String),
    Subject(String),
}

struct Discovered {
    client: Client,
    metadata: ProviderMetadataWithLogout,
    at: Instant,
}

pub struct Provider {
    issuer: String,
    client_id: String,
    client_secret: Option<SecretString>,
    scopes: Vec<String>,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
    last_failure: Mutex<Option<(Instant, String)>>,
    /// Logout tokens taken, by issuer and `jti`, for as long as they could
    /// pass the age check. Only tokens the provider signed get here.
    seen_logout_tokens: moka::sync::Cache<String, ()>,
}

impl Provider {
    pub fn new(issuer: &str, client_id: &str, client_secret: Option<SecretString>, scopes: &[String]) -> Self {
        // The provider's answers are never followed elsewhere: a redirect
        // from its token endpoint is an error, not a new place to send the
        // client secret.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .build()
            .expect("a reqwest client builds");
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            scopes: scopes.to_vec(),
            http,
            discovered: Mutex::new(None),
            last_failure: Mutex::new(None),
            seen_logout_tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(LOGOUT_TOKEN_MAX_AGE_SECS as u64 + 60))
                .build(),
        }
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(found) = discovered.as_ref()
            && found.at.elapsed() < METADATA_TTL
        {
            return Ok(Arc::clone(found));
        }
        let failed = |why: String| ProviderError::Discovery {
            issuer: self.issuer.clone(),
            why,
        };
        {
            let last = self.last_failure.lock().await;
            if let Some((at, why)) = last.as_ref()
                && at.elapsed() < RETRY_AFTER
            {
                // Metadata a little past its time beats no sign-in at all.
                return match discovered.as_ref() {
                    Some(stale) => Ok(Arc::clone(stale)),
                    None => Err(failed(why.clone())),
                };
            }
        }
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|error| failed(error.to_string()))?;
        match ProviderMetadataWithLogout::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                let client = CoreClient::from_provider_metadata(
                    metadata.clone(),
                    ClientId::new(self.client_id.clone()),
                    self.client_secret
                        .as_ref()
                        .map(|secret| ClientSecret::new(secret.expose_secret().to_owned())),
                );
                let found = Arc::new(Discovered {
                    client,
                    metadata,
                    at: Instant::now(),
                });
                *discovered = Some(Arc::clone(&found));
                Ok(found)
            }
            Err(error) => {
                let why = error_chain(&error);
                *self.last_failure.lock().await = Some((Instant::now(), why.clone()));
                // Metadata a little past its time beats no sign-in at all.
                match discovered.as_ref() {
                    Some(stale) => Ok(Arc::clone(stale)),
                    None => Err(failed(why)),
                }
            }
        }
    }

    /// Starts a sign-in that returns to `redirect`.
    pub async fn authorize(&self, redirect: &str) -> Result<Authorization, ProviderError> {
        let discovered = self.discovered().await?;
        let redirect =
            RedirectUrl::new(redirect.to_owned()).map_err(|_| ProviderError::RedirectUrl(redirect.to_owned()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_challenge(challenge);
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Finishes a sign-in: trades the code for tokens and checks the ID
    /// token (signature, issuer, audience, expiry, nonce).
    pub async fn finish(
        &self,
        redirect: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, ProviderError> {
        let discovered = self.discovered().await?;
        let redirect =
            RedirectUrl::new(redirect.to_owned()).map_err(|_| ProviderError::RedirectUrl(redirect.to_owned()))?;
        let tokens = discovered
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| ProviderError::Exchange(error.to_string()))?
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|error| ProviderError::Exchange(error_chain(&error)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| ProviderError::IdToken("the provider sent no ID token".to_owned()))?;
        let verifier = discovered.client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|error| ProviderError::IdToken(error.to_string()))?;
        let raw = id_token.to_string();
        let mut all_claims = payload_of(&raw).ok_or_else(|| ProviderError::IdToken("unreadable payload".to_owned()))?;
        let mut email = claims.email().map(|email| email.as_str().to_owned());
        let mut email_verified = claims.email_verified().unwrap_or(false);
        if email.is_none() {
            // Providers that keep ID tokens small (as the spec suggests when
            // an access token is issued) give the email at userinfo; its
            // subject must be the ID token's.
            let request = discovered
                .client
                .user_info(tokens.access_token().clone(), Some(claims.subject().clone()));
            if let Ok(request) = request {
                let info: openidconnect::core::CoreUserInfoClaims = request
                    .request_async(&self.http)
                    .await
                    .map_err(|error| ProviderError::Exchange(format!("userinfo: {}", error_chain(&error))))?;
                email = info.email().map(|email| email.as_str().to_owned());
                email_verified = info.email_verified().unwrap_or(false);
                if let (Some(object), Ok(serde_json::Value::Object(extra))) =
                    (all_claims.as_object_mut(), serde_json::to_value(&info))
                {
                    for (key, value) in extra {
                        object.entry(key).or_insert(value);
                    }
                }
            }
        }
        Ok(SignedIn {
            subject: claims.subject().as_str().to_owned(),
            email,
            email_verified,
            provider_session: all_claims.get("sid").and_then(|sid| sid.as_str()).map(str::to_owned),
            claims: all_claims,
            id_token: raw,
        })
    }

    /// Where to send a user who signs out, so the provider ends its own
    /// session too; `None` when it has no end-session endpoint.
    pub async fn end_session_url(&self, id_token: &str) -> Option<String> {
        let discovered = self.discovered().await.ok()?;
        let endpoint = discovered.metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut request = LogoutRequest::from(endpoint).set_client_id(ClientId::new(self.client_id.clone()));
        if let Ok(token) = id_token.parse::<openidconnect::core::CoreIdToken>() {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url().to_string())
    }

    /// Checks a back-channel logout token: signed by one of the provider's
    /// keys with an algorithm it announced, for this client, recent, with
    /// the logout event and no nonce (so an ID token cannot pass for one).
    pub async fn verify_logout_token(&self, token: &str, now_secs: i64) -> Result<LogoutTarget, ProviderError> {
        let refuse = ProviderError::LogoutToken;
        let discovered = self.discovered().await?;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("not a signed JWT"));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: CoreJwsSigningAlgorithm,
            kid: Option<String>,
            typ: Option<String>,
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(refuse("unreadable header"))?;
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(refuse("typed as something other than a logout token"));
        }
        let announced = discovered.metadata.id_token_signing_alg_values_supported();
        if header.alg == CoreJwsSigningAlgorithm::None || !announced.contains(&header.alg) {
            return Err(refuse("signed with an algorithm the provider does not use"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| refuse("unreadable signature"))?;
        let signed = &token[..header_len(token)];
        let verified = discovered
            .metadata
            .jwks()
            .keys()
            .iter()
            .filter(|key| header.kid.is_none() || key.key_id().map(|id| id.as_str()) == header.kid.as_deref())
            .any(|key| key.verify_signature(&header.alg, signed.as_bytes(), &signature).is_ok());
        if !verified {
            return Err(refuse("no key of the provider signed it"));
        }
        let claims: serde_json::Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(refuse("unreadable payload"))?;
        if claims.get("iss").and_then(|v| v.as_str()) != Some(discovered.metadata.issuer().as_str()) {
            return Err(refuse("issued by another provider"));
        }
        let audience_ok = match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => aud == &self.client_id,
            Some(serde_json::Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(&self.client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(refuse("meant for another client"));
        }
        let issued = claims.get("iat").and_then(|v| v.as_i64()).ok_or(refuse("no iat"))?;
        if issued > now_secs + 60 || now_secs - issued > LOGOUT_TOKEN_MAX_AGE_SECS {
            return Err(refuse("too old, or issued in the future"));
        }
        match claims.get("exp").and_then(|v| v.as_i64()) {
            Some(exp) if exp > now_secs => {}
            Some(_) => return Err(refuse("expired")),
            None => return Err(refuse("no exp")),
        }
        if claims.get("nonce").is_some() {
            return Err(refuse("carries a nonce, so it is an ID token"));
        }
        if !claims
            .get("events")
            .and_then(|events| events.get(LOGOUT_EVENT))
            .is_some_and(serde_json::Value::is_object)
        {
            return Err(refuse("lacks the back-channel logout event"));
        }
        // Each token ends sessions once: a replayed one could end sessions
        // begun after the logout it announced.
        let jti = claims.get("jti").and_then(|v| v.as_str()).ok_or(refuse("no jti"))?;
        let key = format!("{}\u{0}{jti}", discovered.metadata.issuer().as_str());
        if self.seen_logout_tokens.contains_key(&key) {
            return Err(refuse("replayed"));
        }
        self.seen_logout_tokens.insert(key, ());
        match (
            claims.get("sid").and_then(|v| v.as_str()),
            claims.get("sub").and_then(|v| v.as_str()),
        ) {
            (Some(sid), _) => Ok(LogoutTarget::ProviderSession(sid.to_owned())),
            (None, Some(sub)) => Ok(LogoutTarget::Subject(sub.to_owned())),
            (None, None) => Err(refuse("names neither sid nor sub")),
        }
    }
}

/// Length of a JWT's signed part (`header.payload`).
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

/// A JWT's claims, without checks (the caller has checked the signature).
fn payload_of(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
